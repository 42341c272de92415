"""The README's command that runs the pipeline, `deploy/local/run.sh`, as a user types it: it
starts the ingress, its workers and the console, payouts are credited, and one Ctrl-C stops every
process."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from argon2 import PasswordHasher

from tests.e2e.fault_runs import settle
from tests.e2e.provider import ProviderSimulator, reconcile
from tests.e2e.stack import alive, free_port
from tests.e2e.test_worker_processes import free_port_pair, ready, started_pids
from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
# run.sh stops the workers through their supervisor: its bound (workers.consumer.stop_seconds
# plus the supervisor's margin) under the stack's settings, and a little more.
STOP_SECONDS = 50
# A config with an operator: run.sh starts the console beside the pipeline.
CONSOLE_SECTION = """
[console]
port = {port}
secure_cookies = false

[[console.operators]]
name = "olga"
role = "operator"
password_hash = "{password_hash}"
"""
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


async def _ingress_ready(stack: Stack) -> bool:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        try:
            return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False


async def _console_answers(base_url: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url) as client:
        try:
            return (await client.get("/login")).status_code == 200
        except httpx.TransportError:
            return False


def _start_run_sh(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        # A session of its own, as a terminal's foreground job: Ctrl-C signals the whole group.
        return subprocess.Popen(
            ["bash", str(ROOT / "deploy" / "local" / "run.sh")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_run_sh_runs_the_pipeline_and_ctrl_c_stops_it(stack: Stack, tmp_path: Path) -> None:
    status_port = free_port_pair()
    console_port = free_port()
    config = tmp_path / "run.toml"
    config.write_text(
        stack.config_path.read_text().replace(
            "[worker]\n", f"[worker]\nstatus_port = {status_port}\n"
        )
        + CONSOLE_SECTION.format(port=console_port, password_hash=_CHEAP.hash("pw"))
    )
    env = {
        **stack.env(database_url=stack.database_url, broker_url=stack.broker_url),
        "PAYOUTS_CONFIG": str(config),
        "PAYOUTS_WORKERS": "2",
    }
    console = f"http://127.0.0.1:{console_port}"
    log_path = tmp_path / "run.log"
    run = _start_run_sh(env, log_path)
    try:

        async def running() -> bool:
            assert run.poll() is None, f"run.sh exited {run.returncode}:\n{log_path.read_text()}"
            return (
                await _ingress_ready(stack)
                and await ready(status_port)
                and await ready(status_port + 1)
                and await _console_answers(console)
            )

        await wait_until(running, "run.sh's ingress, two workers and console ready", 60)

        provider = ProviderSimulator(stack, seed=53)
        await provider.run(60, 2.0)
        await settle(stack)
        (await reconcile(stack, provider.payouts)).assert_clean()
        workers = started_pids(log_path.read_text())
        assert len(workers) == 2, log_path.read_text()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
        try:
            code = run.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise
    # Ctrl-C ends the script as an interrupted one; what matters is that nothing outlived it.
    assert code in (0, 128 + signal.SIGINT), log_path.read_text()
    assert "Traceback" not in log_path.read_text()
    for pid in workers:
        assert not alive(pid), f"worker {pid} outlived run.sh"
    assert not await _ingress_ready(stack)
    assert not await ready(status_port)
    assert not await ready(status_port + 1)
    assert not await _console_answers(console)
