"""`payouts worker --processes N`: N worker processes under one supervisor, each restarted when it
dies, all stopped together; and each worker's side of that, stopping once its supervisor is gone.

Processes rather than tasks, because crediting is CPU work in Python and one process uses one
core. Each child is a plain `payouts worker` with its own status port (the configured one plus its
index), so every process is scraped on its own and no two collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from schema.logs import log

__all__ = ["Limits", "Supervisor", "stop_when_orphaned"]

logger = logging.getLogger(__name__)

FIRST_RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
# A child that ran this long without dying is healthy again: its next restart waits briefly.
STABLE_SECONDS = 60.0
# Deaths in a row, each younger than STABLE_SECONDS, after which a child is broken for good (its
# port held, its config refused) and all stop: restarts take 1 + 2 + 4 + 8 s, so the service
# manager hears of it in under half a minute. An outage does not count: a worker waits for
# Postgres and RabbitMQ, and leaves after worker.no_consumer_exit_seconds (past STABLE_SECONDS).
MAX_YOUNG_DEATHS = 5
# Beyond the children's own stop bound (workers.consumer.stop_seconds), before the supervisor
# kills what is left: the time they take to close their connections.
STOP_MARGIN_SECONDS = 10.0
# What `run` returns when a child could not be kept running or did not stop as told: the service
# manager (systemd, compose, Kubernetes) sees a failure, not a clean stop.
EXIT_FAILURE = 1
# How often a worker checks that its supervisor is still its parent: a getppid() a second costs
# nothing, and an orphan starts stopping within a second of its supervisor's death.
ORPHAN_CHECK_SECONDS = 1.0


async def stop_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    """In a worker: set `stop` once its parent is no longer `supervisor_pid`, because the
    supervisor died without stopping it (SIGKILL, the OOM killer) and init adopted it."""
    while not stop.is_set():
        if os.getppid() != supervisor_pid:
            log(logger, logging.ERROR, "supervisor gone; stopping", supervisor_pid=supervisor_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ORPHAN_CHECK_SECONDS)


@dataclass(frozen=True)
class Limits:
    """When a child is restarted and when the supervisor stops waiting for it; the defaults are
    production's, tests shorten them."""

    first_restart_delay_seconds: float = FIRST_RESTART_DELAY_SECONDS
    max_restart_delay_seconds: float = MAX_RESTART_DELAY_SECONDS
    stable_seconds: float = STABLE_SECONDS
    max_young_deaths: int = MAX_YOUNG_DEATHS
    stop_margin_seconds: float = STOP_MARGIN_SECONDS


@dataclass
class _Child:
    index: int
    command: list[str]
    restart_delay: float
    process: asyncio.subprocess.Process | None = None
    # (exit code, seconds it ran) of each death since it last ran STABLE_SECONDS, oldest first;
    # no exit code when it could not be started.
    young_deaths: list[tuple[int | None, float]] = field(default_factory=list)


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
        """Keep every child running until `stop`, or until one cannot be kept running; then stop
        them all. 0 once all stopped as told; EXIT_FAILURE when one was given up on or had to be
        killed."""
        keepers = [asyncio.create_task(self._keep(child)) for child in self._children]
        stopping = asyncio.create_task(self._stopping.wait())
        # A keeper ends before `stop` only when it gives up on its child or fails: then all stop.
        await asyncio.wait([stopping, *keepers], return_when=asyncio.FIRST_COMPLETED)
        self._stopping.set()
        await stopping
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        bound = self._shutdown_seconds + self._limits.stop_margin_seconds
        _, late = await asyncio.wait(keepers, timeout=bound)
        killed = False
        for child in self._children:
            if child.process is not None and child.process.returncode is None:
                log(logger, logging.ERROR, "worker did not stop in time; killing it",
                    index=child.index, worker_pid=child.process.pid)  # fmt: skip
                child.process.kill()
                killed = True
        if late:
            await asyncio.wait(late)
        kept = all(keeper.result() for keeper in keepers)
        code = 0 if kept and not killed else EXIT_FAILURE
        log(logger, logging.INFO, "all workers stopped", exit_code=code)
        return code

    async def _keep(self, child: _Child) -> bool:
        """Run `child` until `stop` (True), restarting it whenever it dies; give up on it (False,
        logged) once it has died young `max_young_deaths` times in a row, or on a fault here."""
        try:
            while not self._stopping.is_set():
                started_at = time.monotonic()
                code = await self._run_once(child)
                if self._stopping.is_set():
                    break
                if not self._may_restart(child, code, time.monotonic() - started_at):
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), child.restart_delay)
                child.restart_delay = min(
                    child.restart_delay * 2, self._limits.max_restart_delay_seconds
                )
        except Exception as error:  # a fault of ours: stop all rather than run one process short
            log(logger, logging.ERROR, "worker process keeper failed; stopping all workers",
                index=child.index, error=repr(error))  # fmt: skip
            return False
        return True

    async def _run_once(self, child: _Child) -> int | None:
        """Start `child` and wait for it to exit: its exit code, or None if it could not start."""
        try:
            child.process = await asyncio.create_subprocess_exec(*child.command)
        except OSError as error:  # the interpreter gone after an upgrade, no memory to fork
            child.process = None
            log(logger, logging.ERROR, "cannot start worker process",
                index=child.index, command=child.command[0], error=repr(error))  # fmt: skip
            return None
        log(logger, logging.INFO, "worker process started",
            index=child.index, worker_pid=child.process.pid)  # fmt: skip
        if self._stopping.is_set():  # stop() came while it started: run() did not see it
            child.process.send_signal(signal.SIGTERM)
        return await child.process.wait()

    def _may_restart(self, child: _Child, code: int | None, ran_seconds: float) -> bool:
        """Count a death of `child` and log it: whether to restart it, or give up on it."""
        if ran_seconds > self._limits.stable_seconds:
            child.restart_delay = self._limits.first_restart_delay_seconds
            child.young_deaths.clear()
        else:
            child.young_deaths.append((code, round(ran_seconds, 1)))
        pid = child.process.pid if child.process is not None else None
        if len(child.young_deaths) >= self._limits.max_young_deaths:
            log(logger, logging.ERROR, "worker process keeps dying; stopping all workers",
                index=child.index, worker_pid=pid, exit_code=code,
                recent_exits=[{"exit_code": exit_code, "ran_seconds": ran}
                              for exit_code, ran in child.young_deaths])  # fmt: skip
            return False
        log(logger, logging.ERROR, "worker process exited; restarting it",
            index=child.index, worker_pid=pid, exit_code=code,
            restart_in_seconds=child.restart_delay)  # fmt: skip
        return True
