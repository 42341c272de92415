"""Replaying, purging and importing dead letters on an operator's behalf, whichever front end
asked (`payouts dlq`, the console): the runs of `payouts.actions.dead_letters`, each written to
the audit trail with who asked, what it selected and how it ended (failed too when it raised)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payouts.actions.audit import AuditResult, failures_recorded, record_audit_or_log
from payouts.actions.dead_letters import DeadLetterQueue, run_on_selection

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from payouts.actions.audit import Actor
    from payouts.actions.dead_letters import Exported, Fetched, Selection, SelectionRun
    from schema.errors import PayoutsError
    from schema.settings import Settings
    from workers.database import Connection

    OnEach = Callable[[SelectionRun, Fetched, PayoutsError | None], None]

__all__ = ["import_messages", "purge", "replay", "selection_target"]

# How many failed or skipped messages an audit entry names, with why: enough to act on, and an
# entry stays small when a whole queue was skipped.
NAMED_IN_ENTRY = 20


def selection_target(selection: Selection) -> str:
    """The audit entry's target: what the operator selected, as the CLI's options say it."""
    parts = [*selection.ids]
    for option, value in (
        ("provider", selection.provider),
        ("reason", selection.reason),
        ("transaction", selection.transaction),
        ("older-than", selection.older_than_seconds),
    ):
        if value:
            parts.append(f"--{option} {value}")
    if selection.envelopes:
        parts.append("--envelopes")
    return " ".join(parts) or "--all"


def _run_named(run_id: str | None) -> dict[str, str]:
    return {"run": run_id} if run_id is not None else {}


async def _recorded(
    settings: Settings,
    actor: Actor,
    action: str,
    selection: Selection,
    run: Awaitable[SelectionRun],
    detail: dict[str, Any],
    declined: Callable[[], bool] = lambda: False,
) -> SelectionRun:
    target = selection_target(selection)
    done = await failures_recorded(settings, actor, action, target, run, detail)
    ended = {
        **detail,
        **done.summary(),
        "failures": [f"{dead_id}: {why}" for dead_id, why in done.failures[:NAMED_IN_ENTRY]],
        "skipped_why": [f"{dead_id}: {why}" for dead_id, why in done.skipped[:NAMED_IN_ENTRY]],
    }
    ended.pop("ids", None)  # the dead_letters table keeps each message's fate
    if declined():
        ended["reason"] = "the count was not confirmed; nothing was done"
    failed = bool(done.failures or done.stopped or declined())
    result = AuditResult.FAILED if failed else AuditResult.OK
    await record_audit_or_log(settings, actor.entry(action, result, target, ended))
    return done


async def replay(
    settings: Settings,
    selection: Selection,
    actor: Actor,
    *,
    force: bool = False,
    dry_run: bool = False,
    per_second: float | None = None,
    on_each: OnEach | None = None,
    stop: asyncio.Event | None = None,
    run_id: str | None = None,
    selecting: asyncio.Lock | None = None,
) -> SelectionRun:
    """Replay the selection (`DeadLetterQueue.replay`: what was credited meanwhile, or would be
    dead-lettered again, is skipped unless `force`), recorded as `dlq.replay` (with `run_id`,
    the console's run, pairing the entry with the one recording its start)."""

    async def one(dlq: DeadLetterQueue, item: Fetched, conn: Connection) -> None:
        await dlq.replay(item, conn, force=force)

    run = run_on_selection(
        settings,
        selection,
        "replayed",
        one,
        dry_run=dry_run,
        per_second=per_second,
        on_each=on_each,
        stop=stop,
        refusal=None if force else DeadLetterQueue.refusal,
        selecting=selecting,
    )
    detail = {"force": force, "per_second": per_second, **_run_named(run_id)}
    return await _recorded(settings, actor, "dlq.replay", selection, run, detail)


async def purge(
    settings: Settings,
    selection: Selection,
    actor: Actor,
    *,
    confirm: Callable[[int], Awaitable[bool]],
    on_each: OnEach | None = None,
    stop: asyncio.Event | None = None,
    run_id: str | None = None,
    selecting: asyncio.Lock | None = None,
) -> SelectionRun:
    """Purge the selection once `confirm` agreed to its count, recorded as `dlq.purge` (failed,
    with nothing purged, when it did not agree; with `run_id` as `replay` has it)."""
    answers: list[bool] = []

    async def confirmed(count: int) -> bool:
        answers.append(await confirm(count))
        return answers[-1]

    run = run_on_selection(
        settings,
        selection,
        "purged",
        DeadLetterQueue.purge,
        confirm=confirmed,
        on_each=on_each,
        stop=stop,
        selecting=selecting,
    )
    return await _recorded(
        settings,
        actor,
        "dlq.purge",
        selection,
        run,
        _run_named(run_id),
        declined=lambda: answers == [False],
    )


async def import_messages(
    settings: Settings, messages: list[Exported], source: str, actor: Actor
) -> int:
    """Put exported messages back into the dead-letter queue, recorded as `dlq.import` of
    `source` (the file)."""

    async def add_all() -> int:
        async with DeadLetterQueue.open(settings.broker) as dlq:
            for message in messages:
                await dlq.add(message)
        return len(messages)

    count = await failures_recorded(settings, actor, "dlq.import", source, add_all())
    entry = actor.entry("dlq.import", AuditResult.OK, source, {"imported": count})
    await record_audit_or_log(settings, entry)
    return count
