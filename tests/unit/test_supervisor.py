"""The supervisor of `payouts worker --processes N`, over small real child processes: what it
restarts, when it gives up, and what it tells its own service manager."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import pytest

from schema.logs import logged_fields
from tests.polling import wait_until
from workers.supervisor import EXIT_FAILURE, Limits, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

# Back-off and stop margins in milliseconds, so each test takes about a second.
FAST = Limits(
    first_restart_delay_seconds=0.05,
    max_restart_delay_seconds=0.2,
    stable_seconds=5.0,
    stop_margin_seconds=0.5,
)
# Far beyond what any test here needs: a supervisor still running by then is stuck.
RUN_LIMIT_SECONDS = 10.0
# A child that runs until signalled, telling the test it has started by creating a file.
SLEEPER = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
IGNORES_SIGTERM = (
    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
)


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    """The fields of each supervisor line with this message."""
    return [
        logged_fields(record)
        for record in caplog.records
        if record.name == "workers.supervisor" and record.getMessage() == message
    ]


async def started(marker: Path) -> None:
    async def exists() -> bool:
        return await asyncio.to_thread(marker.exists)

    await wait_until(exists, f"the child created {marker}", RUN_LIMIT_SECONDS)


async def finished(running: asyncio.Task[int]) -> int:
    async with asyncio.timeout(RUN_LIMIT_SECONDS):
        return await running


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "workers.supervisor")


async def test_children_that_stop_when_told_make_a_clean_exit(tmp_path: Path) -> None:
    markers = [tmp_path / "0", tmp_path / "1"]
    supervisor = Supervisor([python(SLEEPER, str(m)) for m in markers], 0.0, FAST)
    running = asyncio.create_task(supervisor.run())
    for marker in markers:
        await started(marker)
    supervisor.stop()
    assert await finished(running) == 0


async def test_a_child_killed_at_shutdown_makes_the_supervisor_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn, obedient = tmp_path / "stubborn", tmp_path / "obedient"
    supervisor = Supervisor(
        [python(SLEEPER, str(obedient)), python(IGNORES_SIGTERM, str(stubborn))], 0.0, FAST
    )
    running = asyncio.create_task(supervisor.run())
    await started(obedient)
    await started(stubborn)
    supervisor.stop()
    assert await finished(running) == EXIT_FAILURE
    (killed,) = logged(caplog, "worker did not stop in time; killing it")
    assert killed["index"] == 1


async def test_a_child_that_keeps_dying_young_stops_all_and_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = tmp_path / "healthy"
    supervisor = Supervisor(
        [python(SLEEPER, str(healthy)), python("raise SystemExit(3)")], 0.0, FAST
    )
    running = asyncio.create_task(supervisor.run())
    assert await finished(running) == EXIT_FAILURE
    (gave_up,) = logged(caplog, "worker process keeps dying; stopping all workers")
    assert gave_up["index"] == 1
    assert gave_up["exit_code"] == 3
    assert [exit["exit_code"] for exit in gave_up["recent_exits"]] == [3] * FAST.max_young_deaths
    assert len(logged(caplog, "worker process exited; restarting it")) == FAST.max_young_deaths - 1
    assert [line["index"] for line in logged(caplog, "worker process started")].count(0) == 1


async def test_a_command_that_cannot_be_executed_counts_as_a_death_and_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = tmp_path / "healthy"
    supervisor = Supervisor(
        [python(SLEEPER, str(healthy)), [str(tmp_path / "upgraded-away" / "python")]], 0.0, FAST
    )
    running = asyncio.create_task(supervisor.run())
    assert await finished(running) == EXIT_FAILURE
    failures = logged(caplog, "cannot start worker process")
    assert len(failures) == FAST.max_young_deaths
    assert "FileNotFoundError" in failures[0]["error"]
    (gave_up,) = logged(caplog, "worker process keeps dying; stopping all workers")
    assert gave_up["index"] == 1
    assert gave_up["exit_code"] is None


async def test_a_keeper_that_fails_stops_all_and_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = tmp_path / "healthy"
    # A NUL byte in the program's name: not an OSError from the system, a ValueError from Python.
    supervisor = Supervisor([python(SLEEPER, str(healthy)), ["python\0"]], 0.0, FAST)
    running = asyncio.create_task(supervisor.run())
    assert await finished(running) == EXIT_FAILURE
    (failed,) = logged(caplog, "worker process keeper failed; stopping all workers")
    assert failed["index"] == 1
    assert "ValueError" in failed["error"]


async def test_a_child_started_during_shutdown_is_told_to_stop_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = Supervisor([python(SLEEPER, str(tmp_path / "late"))], 0.0, FAST)
    spawn = asyncio.create_subprocess_exec

    async def spawn_as_stop_comes(*command: Any, **options: Any) -> asyncio.subprocess.Process:
        process = await spawn(*command, **options)
        supervisor.stop()  # SIGTERM reaching the supervisor while its child starts
        await asyncio.sleep(0.2)  # run() signals the children it knows of meanwhile
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn_as_stop_comes)
    assert await finished(asyncio.create_task(supervisor.run())) == 0
    assert not logged(caplog, "worker did not stop in time; killing it")
