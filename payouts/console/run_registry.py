"""The replays and purges started from the console: each an asyncio task of the console's
process, kept in one registry so that it outlives the request that started it, its page can
show how far it got, and the console's shutdown can stop it between two messages."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from payouts.actions.audit import AuditResult, record_audit
from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from payouts.actions.audit import Actor
    from payouts.actions.dead_letters import Fetched, SelectionRun
    from schema.errors import PayoutsError
    from schema.settings import Settings

__all__ = ["KEPT_RUNS", "ConsoleRun", "RunRegistry", "RunUnderWay"]

logger = logging.getLogger("payouts.console")
# Finished runs whose pages stay available, newest kept: enough for the operators of one
# incident; the audit trail keeps every run for good.
KEPT_RUNS = 50


class RunUnderWay(Exception):
    """Another run has not ended: it holds the messages it selected until it does, so a second
    one would find none of them."""

    def __init__(self, run: ConsoleRun) -> None:
        super().__init__(f"{run.action} {run.target} (run {run.id}) is under way")
        self.run = run


@dataclass
class ConsoleRun:
    """One run: what was asked, by whom, and how far it got (`progress`, the run's own record,
    live once its first message is done; None while it selects, and for a dry run)."""

    id: str
    action: str
    target: str
    actor: Actor
    detail: dict[str, Any]
    started_at: datetime
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    progress: SelectionRun | None = None
    task: asyncio.Task[Any] | None = None

    @property
    def ended(self) -> bool:
        return self.task is not None and self.task.done()

    def heard(self, progress: SelectionRun, _: Fetched, __: PayoutsError | None) -> None:
        """The `on_each` of the run: it hears of every message done, failed or skipped."""
        self.progress = progress

    def outcome(self) -> Any:
        """What the run's work returned; CancelledError if the console's shutdown cut it."""
        assert self.task is not None
        return self.task.result()


class RunRegistry:
    """The runs of this console process, one under way at a time."""

    def __init__(self, kept: int = KEPT_RUNS) -> None:
        self._kept = kept
        self._runs: dict[str, ConsoleRun] = {}

    def get(self, run_id: str) -> ConsoleRun | None:
        return self._runs.get(run_id)

    def under_way(self) -> ConsoleRun | None:
        return next((run for run in self._runs.values() if not run.ended), None)

    async def start(
        self,
        settings: Settings,
        actor: Actor,
        action: str,
        target: str,
        detail: dict[str, Any],
        work: Callable[[ConsoleRun], Coroutine[Any, Any, Any]],
    ) -> ConsoleRun:
        """Record `action`.start in the audit trail, then run `work` as a task of its own.

        RunUnderWay if a run has not ended; DatabaseUnavailable, and nothing started, if the
        entry cannot be written: a run cut short by a restart leaves this entry without the
        one `work` writes when it ends."""
        busy = self.under_way()
        if busy is not None:
            raise RunUnderWay(busy)
        run = ConsoleRun(secrets.token_hex(8), action, target, actor, detail, datetime.now(UTC))
        # Held before the entry is written, so that a second request meanwhile is refused.
        self._runs[run.id] = run
        entry = actor.entry(f"{action}.start", AuditResult.OK, target, {"run": run.id, **detail})
        try:
            await record_audit(settings, entry)
        except BaseException:
            del self._runs[run.id]
            raise
        run.task = asyncio.create_task(work(run), name=f"console {action} {run.id}")
        run.task.add_done_callback(self._ended)
        return run

    async def stop_all(self, grace_seconds: float) -> None:
        """Ask each run under way to stop after its current message (it records how far it got),
        wait up to `grace_seconds`, then cancel what is left: the console is stopping."""
        tasks = [run.task for run in self._runs.values() if run.task and not run.task.done()]
        for run in self._runs.values():
            run.stop.set()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in late:
            log(logger, logging.WARNING, "console run cancelled at shutdown", run=task.get_name())
            task.cancel()
        if late:
            await asyncio.wait(late)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log(logger, logging.ERROR, "console run failed", run=task.get_name(), error=repr(error))
        finished = [run_id for run_id, run in self._runs.items() if run.ended]
        for run_id in finished[: max(len(finished) - self._kept, 0)]:
            del self._runs[run_id]
