"""Replaying and purging dead letters from the console: the form starts a run in the background
(`payouts.console.run_registry`), the same audited run as `payouts dlq replay` and `purge`, and
answers with the run's page, which follows its progress and ends with what it did."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import RedirectResponse

from payouts.actions import dead_letter_runs
from payouts.actions.audit import AuditResult, record_audit_or_log
from payouts.actions.dead_letter_runs import selection_target
from payouts.actions.dead_letters import Selection, SelectionError
from payouts.console.access import Refused, settings_of, signed_in
from payouts.console.acting import acting
from payouts.console.dead_letter_pages import SELECTION_FIELDS, broker_away, browsing_lock
from payouts.console.rendering import render
from payouts.console.run_registry import KEPT_RUNS, RunUnderWay
from schema.errors import BrokerUnavailable, ServiceUnavailable
from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.actions.audit import Actor
    from payouts.actions.dead_letters import SelectionRun
    from payouts.console.run_registry import ConsoleRun, RunRegistry

__all__ = ["purge", "replay", "run_page", "stop"]

logger = logging.getLogger("payouts.console")
# The CLI's default: a queue of thousands replayed at once would flood the workers.
DEFAULT_RATE = 50.0
MAX_RATE = 1000.0
# How often a run's page reloads itself while the run is under way (a meta refresh: the
# Content-Security-Policy allows no script).
REFRESH_SECONDS = 2
# The ids a run's page lists of each kind (would be done, skipped, failed): a dry run of a whole
# queue of thousands is a page to read, not a dump; `payouts dlq replay --dry-run` lists all.
LISTED_PER_KIND = 200


class BadForm(ValueError):
    """An action's form that cannot be acted on; the message says what to change."""


@dataclass(frozen=True)
class Ending:
    """The page a run ends with: what a request that waited for it would have answered."""

    template: str
    context: dict[str, Any]
    status: int


def _runs(request: Request) -> RunRegistry:
    runs: RunRegistry = request.app.state.dead_letter_runs
    return runs


def _run_link(run: ConsoleRun) -> str:
    return f"/dead-letters/runs/{run.id}"


def _selection(form: dict[str, str]) -> Selection:
    """The messages a form names: one id, a filter, or (`scope` all) the whole queue."""
    one = form.get("id", "").strip()
    if one:
        return Selection(ids=(one,))
    selection = Selection(
        provider=form.get("provider", "").strip() or None,
        reason=form.get("reason", "").strip() or None,
    )
    if not selection.narrowed and form.get("scope") != "all":
        raise BadForm("Name a message, give a filter, or choose the whole queue.")
    return selection


def _rate(form: dict[str, str]) -> float:
    text = form.get("rate", "").strip() or str(DEFAULT_RATE)
    try:
        rate = float(text)
    except ValueError:
        raise BadForm(f"Rate: a number of messages per second, up to {MAX_RATE:g}.") from None
    if not 0 < rate <= MAX_RATE:
        raise BadForm(f"Rate: a number of messages per second, up to {MAX_RATE:g}.")
    return rate


def _error(message: str, status: int) -> Ending:
    return Ending("error.html", {"message": message}, status)


def _ran(verb: str, run: SelectionRun) -> Ending:
    status = 200 if not (run.failures or run.stopped) else 502
    context = {"verb": verb, "run": run, "listed": LISTED_PER_KIND}
    return Ending("dead_letter_run.html", context, status)


async def _ended(action: str, work: Awaitable[Ending]) -> Ending:
    """`work`'s page, or the page of the error it raised (the action layer recorded it as
    failed): nobody waits on a background run to see its error otherwise."""
    try:
        return await work
    except SelectionError as error:
        return _error(str(error), 400)
    except BrokerUnavailable as error:
        return _error(broker_away(error), 503)
    except ServiceUnavailable as error:
        return _error(f"The console cannot reach its database: {error}. Run it again.", 503)
    except Exception as error:
        log(logger, logging.ERROR, "console run failed", action=action, error=repr(error))
        return _error(
            f"{action} failed: {type(error).__name__}: {error}. The messages not done stay in "
            "the queue; the run is recorded as failed in the audit trail.",
            500,
        )


async def _start(
    request: Request,
    action: str,
    selection: Selection,
    actor: Actor,
    detail: dict[str, Any],
    work: Callable[[ConsoleRun], Awaitable[Ending]],
) -> Response:
    """Start `work` as a run and send the browser to its page (303), or refuse with 409 while
    another run has not ended."""
    try:
        run = await _runs(request).start(
            settings_of(request),
            actor,
            action,
            selection_target(selection),
            detail,
            lambda run: _ended(action, work(run)),
        )
    except RunUnderWay as busy:
        message = (
            f"Nothing was started: {busy}, holding the messages it selected until it ends. "
            f"Follow it at {_run_link(busy.run)}, and start this one once it ended."
        )
        raise Refused(409, message, action, "another run is under way") from None
    return RedirectResponse(_run_link(run), status_code=303)


@signed_in
async def replay(request: Request) -> Response:
    form, actor = await acting(request, "dlq.replay")
    try:
        selection = _selection(form)
        rate = _rate(form)
    except BadForm as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    settings = settings_of(request)
    force, dry_run = form.get("force") == "yes", form.get("dry_run") == "yes"

    async def work(run: ConsoleRun) -> Ending:
        done = await dead_letter_runs.replay(
            settings,
            selection,
            actor,
            force=force,
            dry_run=dry_run,
            per_second=rate,
            on_each=run.heard,
            stop=run.stop,
            run_id=run.id,
            selecting=browsing_lock(request),
        )
        return _ran("replayed", done)

    detail = {"force": force, "dry_run": dry_run, "per_second": rate}
    return await _start(request, "dlq.replay", selection, actor, detail, work)


@signed_in
async def purge(request: Request) -> Response:
    form, actor = await acting(request, "dlq.purge")
    try:
        selection = _selection(form)
    except BadForm as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    settings = settings_of(request)
    typed = form.get("confirmation", "").strip()
    posted = {name: form[name] for name in SELECTION_FIELDS if form.get(name, "").strip()}

    async def work(run: ConsoleRun) -> Ending:
        counted: list[int] = []

        async def confirm(count: int) -> bool:
            counted.append(count)
            return typed == str(count)

        done = await dead_letter_runs.purge(
            settings,
            selection,
            actor,
            confirm=confirm,
            on_each=run.heard,
            stop=run.stop,
            run_id=run.id,
            selecting=browsing_lock(request),
        )
        if counted and typed != str(counted[0]):
            # Counted over the whole queue: the list may have browsed only part of it.
            message = (
                f"Nothing was purged: the selection holds {counted[0]} messages, and you typed "
                f"{repr(typed) if typed else 'nothing'}. Type {counted[0]} to purge them."
            )
            context = {"message": message, "selection_fields": posted}
            return Ending("dead_letter_purge_count.html", context, 400)
        return _ran("purged", done)

    return await _start(request, "dlq.purge", selection, actor, {}, work)


def _seconds_left(run: ConsoleRun) -> float | None:
    """At the run's rate, how long the messages not yet reached will take."""
    rate = float(run.detail.get("per_second") or 0)
    progress = run.progress
    if not rate or progress is None:
        return None
    reached = progress.done + len(progress.skipped) + len(progress.failures)
    return max(progress.selected - reached, 0) / rate


@signed_in
async def run_page(request: Request) -> Response:
    """A run's progress, reloading itself until the run ends, then the page it ended with. A
    viewer sees it too: every page reads for a viewer; only starting and stopping act."""
    run = _runs(request).get(request.path_params["run_id"])
    if run is None:
        message = (
            f"No run {request.path_params['run_id']!r} in this console: it keeps the last "
            f"{KEPT_RUNS} runs since it started. The audit trail has every run (dlq.replay, "
            "dlq.purge, and their .start entries)."
        )
        return render(request, "error.html", {"message": message}, status=404)
    if not run.ended:
        context = {
            "run": run,
            "refresh_seconds": REFRESH_SECONDS,
            "seconds_left": _seconds_left(run),
        }
        return render(request, "dead_letter_run_progress.html", context)
    ending: Ending = run.outcome()
    return render(request, ending.template, ending.context, ending.status)


@signed_in
async def stop(request: Request) -> Response:
    """Stop a run after its current message; the messages not done stay in the queue."""
    _, actor = await acting(request, "dlq.stop")
    run = _runs(request).get(request.path_params["run_id"])
    if run is None:
        message = f"No run {request.path_params['run_id']!r} in this console to stop."
        return render(request, "error.html", {"message": message}, status=404)
    if run.ended:
        return RedirectResponse(_run_link(run), status_code=303)
    run.stop.set()
    # Stopped whether or not the entry can be written: stopping is the safe side.
    target = f"{run.action} {run.target}"
    await record_audit_or_log(
        settings_of(request), actor.entry("dlq.stop", AuditResult.OK, target, {"run": run.id})
    )
    return RedirectResponse(_run_link(run), status_code=303)
