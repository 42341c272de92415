"""The Dead letters pages: the dead-letter queue browsed (its first messages only, filtered by
reason and provider instance, paged), one message whole, and replaying or purging one, a
filtered set or all of them, through the same audited runs as `payouts dlq replay` and
`payouts dlq purge`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from payouts.actions import dead_letter_runs
from payouts.actions.connections import with_connection
from payouts.actions.dead_letters import DeadLetterQueue, Selection, SelectionError, with_credits
from payouts.console.access import signed_in
from payouts.console.acting import LIST_PAGE_SIZE, acting, link, query_of
from payouts.console.rendering import render
from schema.errors import BrokerUnavailable, DatabaseUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.actions.dead_letters import SelectionRun
    from schema.settings import Settings

__all__ = ["BROWSED_PER_VIEW", "dead_letter", "dead_letters", "purge", "replay"]

T = TypeVar("T")
FILTERS = ("reason", "provider")
# The form fields that name what a replay or purge acts on (`_selection` reads them).
SELECTION_FIELDS = ("id", *FILTERS, "scope")
# How many messages one view of the list browses at most: in an incident the queue may hold
# 100,000, which a page must neither wait for nor hold in memory. Filters reach the others, and
# a replay or purge acts on the whole queue.
BROWSED_PER_VIEW = 2000
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


async def _browsing(settings: Settings, look: Callable[[DeadLetterQueue], Awaitable[T]]) -> T:
    """What `look` found in one browsing session; the broker takes back every message fetched
    when the session ends, so looking changes nothing."""
    async with DeadLetterQueue.open(settings.broker) as dlq:
        return await look(dlq)


@signed_in
async def dead_letters(request: Request) -> Response:
    query = query_of(request, (*FILTERS, "page"))
    page = max(int(query["page"]) if query.get("page", "").isdigit() else 1, 1)
    selection = Selection(provider=query.get("provider"), reason=query.get("reason"))
    settings = _settings(request)
    browsed_at_most: int = request.app.state.dead_letters_browsed
    try:
        view = await _browsing(settings, lambda dlq: dlq.view(selection, browsed_at_most))
    except BrokerUnavailable as error:
        return _unavailable(request, error)
    first = (page - 1) * LIST_PAGE_SIZE
    shown = view.matching[first : first + LIST_PAGE_SIZE]
    credits_known = True
    try:
        shown = await with_connection(settings, lambda conn: with_credits(conn, shown))
    except DatabaseUnavailable:
        # Still listed, as `payouts dlq list` does: in an incident the queue matters most.
        credits_known = False
    filters = {key: value for key, value in query.items() if key != "page"}
    context: dict[str, Any] = {
        "query": filters,
        # What the replay and purge forms act on: these filters, or the whole queue.
        "selection_fields": filters or {"scope": "all"},
        "rows": shown,
        "view": view,
        "browsed_at_most": browsed_at_most,
        "total": len(view.matching),
        "first": first + 1,
        "last": first + len(shown),
        "credits_known": credits_known,
        "page": page,
        "previous_link": link("/dead-letters", filters, page=str(page - 1)) if page > 1 else None,
        "next_link": (
            link("/dead-letters", filters, page=str(page + 1))
            if len(view.matching) > page * LIST_PAGE_SIZE
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
        one = Selection(ids=(wanted,))
        found = await _browsing(_settings(request), lambda dlq: dlq.fetch(one, 2))
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
        # The count taken now, over the whole queue: the list may have browsed only part of it.
        message = (
            f"Nothing was purged: the selection holds {counted[0]} messages, and you typed "
            f"{repr(typed) if typed else 'nothing'}. Type {counted[0]} to purge them."
        )
        posted = {name: form[name] for name in SELECTION_FIELDS if form.get(name, "").strip()}
        context = {"message": message, "selection_fields": posted}
        return render(request, "dead_letter_purge_count.html", context, status=400)
    return _run_page(request, "purged", run)
