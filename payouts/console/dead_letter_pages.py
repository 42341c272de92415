"""The Dead letters pages: the dead-letter queue browsed (filtered by reason and provider
instance, paged), one message whole, and replaying or purging one, a filtered set or all of
them, through the same audited runs as `payouts dlq replay` and `payouts dlq purge`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from payouts.actions import dead_letter_runs
from payouts.actions.connections import with_connection
from payouts.actions.dead_letters import DeadLetterQueue, Selection, SelectionError, with_credits
from payouts.console.access import signed_in
from payouts.console.acting import LIST_PAGE_SIZE, acting, link, query_of
from payouts.console.rendering import render
from schema.errors import BrokerUnavailable, DatabaseUnavailable

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.actions.dead_letters import Fetched, SelectionRun
    from schema.settings import Settings

__all__ = ["dead_letter", "dead_letters", "purge", "replay"]

FILTERS = ("reason", "provider")
# The CLI's default: a queue of thousands replayed at once would flood the workers.
DEFAULT_RATE = 50.0
MAX_RATE = 1000.0


class BadForm(ValueError):
    """An action's form that cannot be acted on; the message says what to change."""


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _unavailable(request: Request, error: BrokerUnavailable) -> Response:
    message = f"The console cannot reach RabbitMQ, which holds the dead letters: {error}"
    return render(request, "error.html", {"message": message}, status=503)


async def _fetched(settings: Settings, selection: Selection, limit: int | None) -> list[Fetched]:
    """Up to `limit` matching messages, in queue order; the broker takes them back when the
    browsing session ends, so looking changes nothing."""
    async with DeadLetterQueue.open(settings.broker) as dlq:
        return await dlq.fetch(selection, limit)


@signed_in
async def dead_letters(request: Request) -> Response:
    query = query_of(request, (*FILTERS, "page"))
    page = max(int(query["page"]) if query.get("page", "").isdigit() else 1, 1)
    selection = Selection(provider=query.get("provider"), reason=query.get("reason"))
    settings = _settings(request)
    try:
        # The whole selection, as `payouts dlq list` reads it: its count is what a purge asks
        # the operator to type.
        fetched = await _fetched(settings, selection, None)
    except BrokerUnavailable as error:
        return _unavailable(request, error)
    shown = fetched[(page - 1) * LIST_PAGE_SIZE : page * LIST_PAGE_SIZE]
    credits_known = True
    try:
        shown = await with_connection(settings, lambda conn: with_credits(conn, shown))
    except DatabaseUnavailable:
        # Still listed, as `payouts dlq list` does: in an incident the queue matters most.
        credits_known = False
    filters = {key: value for key, value in query.items() if key != "page"}
    context: dict[str, Any] = {
        "query": filters,
        "rows": shown,
        "total": len(fetched),
        "credits_known": credits_known,
        "page": page,
        "previous_link": link("/dead-letters", filters, page=str(page - 1)) if page > 1 else None,
        "next_link": (
            link("/dead-letters", filters, page=str(page + 1))
            if len(fetched) > page * LIST_PAGE_SIZE
            else None
        ),
        "now": datetime.now(UTC),
    }
    return render(request, "dead_letters.html", context)


@signed_in
async def dead_letter(request: Request) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if not wanted:
        message = "Name the dead letter: /dead-letter?id=..."
        return render(request, "error.html", {"message": message}, status=400)
    try:
        found = await _fetched(_settings(request), Selection(ids=(wanted,)), 2)
    except BrokerUnavailable as error:
        return _unavailable(request, error)
    if len(found) != 1:
        message = (
            f"No dead letter {wanted!r} in the queue (replayed or purged already?)"
            if not found
            else f"{wanted!r} names more than one dead letter: give the whole id."
        )
        return render(request, "error.html", {"message": message}, status=404)
    (item,) = found
    details = item.entry.details()
    return render(request, "dead_letter.html", {"entry": details, "body": details.pop("body")})


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


def _run_page(request: Request, verb: str, run: SelectionRun) -> Response:
    status = 200 if not (run.failures or run.stopped) else 502
    return render(request, "dead_letter_run.html", {"verb": verb, "run": run}, status=status)


@signed_in
async def replay(request: Request) -> Response:
    form, actor = await acting(request, "dlq.replay")
    try:
        selection = _selection(form)
        rate = _rate(form)
        run = await dead_letter_runs.replay(
            _settings(request),
            selection,
            actor,
            force=form.get("force") == "yes",
            dry_run=form.get("dry_run") == "yes",
            per_second=rate,
        )
    except (BadForm, SelectionError) as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    except BrokerUnavailable as error:
        return _unavailable(request, error)
    return _run_page(request, "replayed", run)


@signed_in
async def purge(request: Request) -> Response:
    form, actor = await acting(request, "dlq.purge")
    typed = form.get("confirmation", "").strip()
    counted: list[int] = []

    async def confirm(count: int) -> bool:
        counted.append(count)
        return typed == str(count)

    try:
        run = await dead_letter_runs.purge(
            _settings(request), _selection(form), actor, confirm=confirm
        )
    except (BadForm, SelectionError) as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    except BrokerUnavailable as error:
        return _unavailable(request, error)
    if counted and typed != str(counted[0]):
        message = (
            f"Nothing was purged: the selection holds {counted[0]} messages, and you typed "
            f"{typed!r}. Type {counted[0]} to purge them."
        )
        return render(request, "error.html", {"message": message}, status=400)
    return _run_page(request, "purged", run)
