"""`payouts worker --processes N`: N real worker processes, each on its own status port, a dead
one restarted, all stopped together by one signal; one that cannot start is given up on, and a
killed supervisor leaves none behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from typing import TYPE_CHECKING, Any

import httpx

from tests.e2e.fault_runs import settle
from tests.e2e.provider import ProviderSimulator, reconcile
from tests.e2e.stack import alive
from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.e2e.stack import Stack


def free_port_pair() -> int:
    """A port P with P + 1 free as well (checked, then released)."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port


def supervision_lines(log: str, message: str) -> list[dict[str, Any]]:
    """The lines of workers.supervisor (the supervisor's, and its workers' about it) with this
    message, from the supervisor's log (other lines skipped)."""
    return [
        line
        for line in map(json.loads, (text for text in log.splitlines() if text[:1] == "{"))
        if line.get("message") == message and line.get("logger") == "workers.supervisor"
    ]


def started_pids(log: str) -> list[int]:
    """The children a supervisor says it started, from its log."""
    return [line["worker_pid"] for line in supervision_lines(log, "worker process started")]


async def ready(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False


async def test_n_processes_are_kept_running_and_stopped_together(stack: Stack) -> None:
    base = free_port_pair()
    await stack.start_ingress()
    supervisor = stack.start_worker_processes(2, base)

    async def both_ready() -> bool:
        return await ready(base) and await ready(base + 1)

    await wait_until(both_ready, f"two workers ready; log:\n{supervisor.log()}")
    first, second = started_pids(supervisor.log())
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        return len(started_pids(supervisor.log())) == 3 and await ready(base)

    await wait_until(restarted, f"the killed worker restarted; log:\n{supervisor.log()}")
    provider = ProviderSimulator(stack, seed=41)
    await provider.run(100, 2.0)
    await settle(stack)
    (await reconcile(stack, provider.payouts)).assert_clean()

    assert supervisor.stop() == 0
    replacement = started_pids(supervisor.log())[2]
    for pid in (second, replacement):
        assert not alive(pid), f"worker {pid} outlived its supervisor"
    assert not await ready(base)
    assert not await ready(base + 1)


async def test_a_worker_that_cannot_start_stops_all_and_the_supervisor_fails(stack: Stack) -> None:
    base = free_port_pair()
    with socket.socket() as squatter:
        # Another program holds worker 1's status port: it dies at once, every time.
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        supervisor = stack.start_worker_processes(2, base)
        try:
            # 1 + 2 + 4 + 8 s of back-off between five short lives, and worker 0's stop.
            code = await asyncio.to_thread(supervisor.popen.wait, 60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor kept going; log:\n{supervisor.log()}") from None
    log = supervisor.log()
    assert code == 1, log
    (gave_up,) = supervision_lines(log, "worker process keeps dying; stopping all workers")
    assert gave_up["index"] == 1
    assert gave_up["exit_code"] == 1
    assert len(gave_up["recent_exits"]) == 5
    assert f"worker status port 127.0.0.1:{base + 1}" in log, "the worker's own reason"
    first_of_worker_0 = next(
        line["worker_pid"]
        for line in supervision_lines(log, "worker process started")
        if line["index"] == 0
    )
    assert not alive(first_of_worker_0)


async def test_workers_stop_when_their_supervisor_is_killed(stack: Stack) -> None:
    base = free_port_pair()
    supervisor = stack.start_worker_processes(2, base)

    async def both_ready() -> bool:
        return await ready(base) and await ready(base + 1)

    await wait_until(both_ready, f"two workers ready; log:\n{supervisor.log()}")
    children = started_pids(supervisor.log())
    supervisor.popen.kill()
    supervisor.popen.wait()

    async def orphans_gone() -> bool:
        return not any(alive(pid) for pid in children)

    try:
        await wait_until(orphans_gone, f"the orphaned workers stopped; log:\n{supervisor.log()}")
    finally:
        for pid in filter(alive, children):  # no one else would stop them
            os.kill(pid, signal.SIGKILL)
    assert not await ready(base)
    assert not await ready(base + 1)
    gone = supervision_lines(supervisor.log(), "supervisor gone; stopping")
    assert sorted(line["pid"] for line in gone) == sorted(children)
