"""`payouts worker --processes N`: N worker processes under one supervisor, each restarted when it
dies, all stopped together.

Processes rather than tasks, because crediting is CPU work in Python and one process uses one
core. Each child is a plain `payouts worker` with its own status port (the configured one plus its
index), so every process is scraped on its own and no two collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass

from schema.logs import log

__all__ = ["Supervisor", "child_command"]

logger = logging.getLogger(__name__)

FIRST_RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
# A child that ran this long without dying is healthy again: its next restart waits briefly.
STABLE_SECONDS = 60.0
# Beyond the children's own stop bound (workers.consumer.stop_seconds), before the supervisor
# kills what is left: the time they take to close their connections.
STOP_MARGIN_SECONDS = 10.0


def child_command(config: str, index: int, status_host: str, status_port: int) -> list[str]:
    """The command line of child `index`: port 0 (any free port) stays 0 for every child."""
    port = status_port + index if status_port else 0
    return [
        sys.executable, "-m", "workers.cli", "--config", config, "worker",
        "--status-host", status_host, "--status-port", str(port),
    ]  # fmt: skip


@dataclass
class _Child:
    index: int
    command: list[str]
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restart_delay: float = FIRST_RESTART_DELAY_SECONDS


class Supervisor:
    def __init__(self, commands: list[list[str]], shutdown_seconds: float) -> None:
        self._children = [_Child(index, command) for index, command in enumerate(commands)]
        self._shutdown_seconds = shutdown_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        """Keep every child running until `stop`; then stop them all and return 0."""
        keepers = [asyncio.create_task(self._keep(child)) for child in self._children]
        await self._stopping.wait()
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=self._shutdown_seconds + STOP_MARGIN_SECONDS)
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                log(logger, logging.ERROR, "worker did not stop in time; killing it",
                    index=child.index, worker_pid=child.process.pid)  # fmt: skip
                child.process.kill()
        if late:
            await asyncio.wait(late)
        log(logger, logging.INFO, "all workers stopped")
        return 0

    async def _keep(self, child: _Child) -> None:
        while not self._stopping.is_set():
            child.process = await asyncio.create_subprocess_exec(*child.command)
            child.started_at = time.monotonic()
            log(logger, logging.INFO, "worker process started",
                index=child.index, worker_pid=child.process.pid)  # fmt: skip
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - child.started_at > STABLE_SECONDS:
                child.restart_delay = FIRST_RESTART_DELAY_SECONDS
            log(logger, logging.ERROR, "worker process exited; restarting it",
                index=child.index, worker_pid=child.process.pid, exit_code=code,
                restart_in_seconds=child.restart_delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.restart_delay)
            child.restart_delay = min(child.restart_delay * 2, MAX_RESTART_DELAY_SECONDS)
