"""The Dead letters pages: the dead-letter queue browsed (its first messages only, filtered by
reason and provider instance, paged) and one message whole, with the forms that replay or purge
them (`payouts.console.dead_letter_run_pages`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from payouts.actions.connections import with_connection
from payouts.actions.dead_letters import DeadLetterQueue, Selection, with_credits
from payouts.console.access import settings_of, signed_in
from payouts.console.acting import LIST_PAGE_SIZE, link, query_of
from payouts.console.rendering import render
from schema.errors import BrokerUnavailable, DatabaseUnavailable

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.console.run_registry import RunRegistry

__all__ = [
    "BROWSED_PER_VIEW",
    "SELECTION_FIELDS",
    "broker_away",
    "browsing_lock",
    "dead_letter",
    "dead_letters",
]

T = TypeVar("T")
FILTERS = ("reason", "provider")
# The form fields that name what a replay or purge acts on (`dead_letter_run_pages` reads them).
SELECTION_FIELDS = ("id", *FILTERS, "scope")
# How many messages one view of the list browses at most: in an incident the queue may hold
# 100,000, which a page must neither wait for nor hold in memory. Filters reach the others, and
# a replay or purge acts on the whole queue.
BROWSED_PER_VIEW = 2000


def broker_away(error: BrokerUnavailable) -> str:
    return f"The console cannot reach RabbitMQ, which holds the dead letters: {error}"


def _unavailable(request: Request, error: BrokerUnavailable) -> Response:
    return render(request, "error.html", {"message": broker_away(error)}, status=503)


def browsing_lock(request: Request) -> asyncio.Lock:
    """Held by each browsing session of this console for its whole length, and by a run while
    it selects: a message fetched is hidden from every other session until it is given back,
    so two viewers at once would each see part of the queue, and a run selecting meanwhile
    would miss what a viewer holds."""
    lock: asyncio.Lock = request.app.state.dead_letter_browsing
    return lock


async def _browsing(request: Request, look: Callable[[DeadLetterQueue], Awaitable[T]]) -> T:
    """What `look` found in one browsing session; the broker takes back every message fetched
    when the session ends, so looking changes nothing."""
    async with browsing_lock(request), DeadLetterQueue.open(settings_of(request).broker) as dlq:
        return await look(dlq)


@signed_in
async def dead_letters(request: Request) -> Response:
    query = query_of(request, (*FILTERS, "page"))
    page = max(int(query["page"]) if query.get("page", "").isdigit() else 1, 1)
    selection = Selection(provider=query.get("provider"), reason=query.get("reason"))
    settings = settings_of(request)
    browsed_at_most: int = request.app.state.dead_letters_browsed
    runs: RunRegistry = request.app.state.dead_letter_runs
    try:
        view = await _browsing(request, lambda dlq: dlq.view(selection, browsed_at_most))
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
        "run_under_way": runs.under_way(),
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
        found = await _browsing(request, lambda dlq: dlq.fetch(one, 2))
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
