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

__all__ = ["Limits", "Supervisor", "child_command"]

logger = logging.getLogger(__name__)

FIRST_RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
# A child that ran this long without dying is healthy again: its next restart waits briefly.
STABLE_SECONDS = 60.0
# Beyond the children's own stop bound (workers.consumer.stop_seconds), before the supervisor
# kills what is left: the time they take to close their connections.
STOP_MARGIN_SECONDS = 10.0
# What `run` returns when the children did not all stop as told: a service manager (systemd,
# compose, Kubernetes) sees a failure, not a clean stop.
EXIT_FAILURE = 1


def child_command(config: str, index: int, status_host: str, status_port: int) -> list[str]:
    """The command line of child `index`: port 0 (any free port) stays 0 for every child."""
    port = status_port + index if status_port else 0
    return [
        sys.executable, "-m", "workers.cli", "--config", config, "worker",
        "--status-host", status_host, "--status-port", str(port),
    ]  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """When a child is restarted and when the supervisor stops waiting for it; the defaults are
    production's, tests shorten them."""

    first_restart_delay_seconds: float = FIRST_RESTART_DELAY_SECONDS
    max_restart_delay_seconds: float = MAX_RESTART_DELAY_SECONDS
    stable_seconds: float = STABLE_SECONDS
    stop_margin_seconds: float = STOP_MARGIN_SECONDS


@dataclass
class _Child:
    index: int
    command: list[str]
    restart_delay: float
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0


class Supervisor:
    def __init__(
        self, commands: list[list[str]], shutdown_seconds: float, limits: Limits | None = None
    ) -> None:
        """`shutdown_seconds`: the longest a child takes to stop once told to."""
        self._limits = limits or Limits()
        self._children = [
            _Child(index, command, self._limits.first_restart_delay_seconds)
            for index, command in enumerate(commands)
        ]
        self._shutdown_seconds = shutdown_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        """Keep every child running until `stop`; then stop them all. 0 once all stopped as told,
        EXIT_FAILURE when one had to be killed."""
        keepers = [asyncio.create_task(self._keep(child)) for child in self._children]
        await self._stopping.wait()
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        bound = self._shutdown_seconds + self._limits.stop_margin_seconds
        _, late = await asyncio.wait(keepers, timeout=bound)
        code = 0
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                log(logger, logging.ERROR, "worker did not stop in time; killing it",
                    index=child.index, worker_pid=child.process.pid)  # fmt: skip
                child.process.kill()
                code = EXIT_FAILURE
        if late:
            await asyncio.wait(late)
        log(logger, logging.INFO, "all workers stopped", exit_code=code)
        return code

    async def _keep(self, child: _Child) -> None:
        while not self._stopping.is_set():
            child.process = await asyncio.create_subprocess_exec(*child.command)
            child.started_at = time.monotonic()
            log(logger, logging.INFO, "worker process started",
                index=child.index, worker_pid=child.process.pid)  # fmt: skip
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - child.started_at > self._limits.stable_seconds:
                child.restart_delay = self._limits.first_restart_delay_seconds
            log(logger, logging.ERROR, "worker process exited; restarting it",
                index=child.index, worker_pid=child.process.pid, exit_code=code,
                restart_in_seconds=child.restart_delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.restart_delay)
            child.restart_delay = min(
                child.restart_delay * 2, self._limits.max_restart_delay_seconds
            )
