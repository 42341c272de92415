"""The support pages: search payouts, one payout with its books, its answers and its refusals,
one user's balances and payouts, and the proof images shown on a payout's page. They only read:
every signed-in operator, viewer or operator, sees them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import Response

from ingress.protocols import protocol_class
from payouts.actions.inspection import PayoutFilter
from payouts.actions.operator import Operator
from payouts.console.access import signed_in
from payouts.console.query_filters import (
    MAX_ENTRY_NUMBER,
    BadQuery,
    entry_number,
    moment,
    page_links,
    text,
)
from payouts.console.rendering import age, render, utc
from schema.outcomes import Outcome
from schema.plain_values import plain_value

if TYPE_CHECKING:
    from starlette.requests import Request

    from schema.settings import Settings

__all__ = ["payout", "proof_image", "search", "transaction", "user"]

SEARCH_PAGE_SIZE = 50
USER_PAGE_SIZE = 20
STATUSES = ("credited", "held")
OUTCOMES = tuple(outcome.value for outcome in Outcome)
# Shown in sections of their own on a payout's page rather than in its table of fields.
SECTIONED_FIELDS = frozenset({"raw_request", "attributes", "items"})
# Beside the fields whose names alone would let support mistake the payout's state now, or a
# stored code, for what a provider was answered.
FIELD_NOTES = {
    "status": "now",
    "outcome": "now: a payout held and credited later says credited",
    "first_outcome": "its first delivery's, which that delivery was answered with",
    "answer_code": (
        "its protocol's success code, stored before any outcome was known: "
        "not what a delivery was answered"
    ),
}


def _operator(request: Request) -> Operator:
    settings: Settings = request.app.state.settings
    return Operator(settings)


def _query(request: Request) -> dict[str, str]:
    return {key: value.strip() for key, value in request.query_params.items()}


def _choice(query: dict[str, str], key: str, choices: tuple[str, ...]) -> str | None:
    value = query.get(key) or None
    if value is not None and value not in choices:
        raise BadQuery(f"{key}: one of {', '.join(choices)}")
    return value


def _search_filter(query: dict[str, str]) -> PayoutFilter:
    return PayoutFilter(
        transaction_id=text(query, "transaction_id"),
        user_id=text(query, "user_id"),
        provider_instance=text(query, "provider_instance"),
        status=_choice(query, "status", STATUSES),
        outcome=_choice(query, "outcome", OUTCOMES),
        since=moment(query, "since"),
        until=moment(query, "until"),
    )


async def _payouts_page(
    request: Request, path: str, query: dict[str, str], filters: PayoutFilter, size: int
) -> dict[str, Any]:
    """One page of the payouts `filters` finds (`query`'s `before` says which), with the links
    to the newest and the next older page."""
    before = entry_number(query, "before")
    # One more than a page: whether an older page exists, without counting.
    rows = await _operator(request).search_payouts(filters, before, size + 1)
    older = rows[size - 1]["payout_id"] if len(rows) > size else None
    links = page_links(path, query, before, older)
    return {"payouts": rows[:size], "newest_link": links.newest, "older_link": links.older}


@signed_in
async def search(request: Request) -> Response:
    query = _query(request)
    settings: Settings = request.app.state.settings
    context: dict[str, Any] = {
        "query": query,
        "statuses": STATUSES,
        "outcomes": OUTCOMES,
        "instances": [instance.name for instance in settings.providers],
    }
    try:
        filters = _search_filter(query)
        context |= await _payouts_page(request, "/payouts", query, filters, SEARCH_PAGE_SIZE)
    except BadQuery as error:
        return render(request, "payouts.html", {**context, "error": str(error)}, status=400)
    return render(request, "payouts.html", context)


def _shown(value: Any) -> str:
    """A field's value as text: times in UTC, amounts as stored, JSON as JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, dict | list):
        return json.dumps(value, default=plain_value, ensure_ascii=False)
    return str(plain_value(value))


def _fields(record: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """Each field of `record` but those with sections of their own: name, value, for a time its
    age, and what the field means where its name could mislead."""
    return [
        (
            name,
            _shown(value),
            age(value) if isinstance(value, datetime) else None,
            FIELD_NOTES.get(name),
        )
        for name, value in record.items()
        if name not in SECTIONED_FIELDS
    ]


def _answers(payout: dict[str, Any]) -> dict[str, tuple[str, str] | None]:
    """The code and message its protocol answers the payout's first delivery's outcome and a
    duplicate with (None: it answers before any outcome, with its stored `answer_code`)."""
    protocol = protocol_class(payout["protocol"])
    return {
        "first": protocol.outcome_answer(Outcome(payout["first_outcome"])),
        "duplicate": protocol.outcome_answer(Outcome.DUPLICATE),
    }


def _not_found(request: Request, message: str) -> Response:
    return render(request, "error.html", {"message": message}, status=404)


def _payout_page(request: Request, details: dict[str, Any]) -> Response:
    payout = details["payout"]
    return render(
        request,
        "payout.html",
        {
            "details": details,
            "payout": payout,
            "fields": _fields(payout) if payout else [],
            "answers": _answers(payout) if payout else {},
        },
    )


@signed_in
async def payout(request: Request) -> Response:
    payout_id: int = request.path_params["payout_id"]
    details = (
        await _operator(request).payout_by_id(payout_id) if payout_id <= MAX_ENTRY_NUMBER else None
    )
    if details is None:
        return _not_found(request, f"There is no payout number {payout_id}. Search for it.")
    return _payout_page(request, details)


@signed_in
async def transaction(request: Request) -> Response:
    """What was recorded under a provider instance's transaction id: its payout, or only the
    deliveries refused under it (a reused signature, an order not found)."""
    query = _query(request)
    try:
        instance = text(query, "provider_instance")
        transaction_id = text(query, "transaction_id")
        if instance is None or transaction_id is None:
            raise BadQuery("give both provider_instance and transaction_id")
    except BadQuery as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    details = await _operator(request).payout(instance, transaction_id)
    if details is None:
        return _not_found(
            request,
            f"Nothing is recorded under transaction {transaction_id!r} of provider instance "
            f"{instance!r}: no payout, no refused delivery.",
        )
    return _payout_page(request, details)


@signed_in
async def user(request: Request) -> Response:
    query = {**_query(request), "user_id": request.path_params["user_id"]}
    try:
        user_id = text(query, "user_id")
        if user_id is None:
            raise BadQuery("user_id: give one")
        page = await _payouts_page(
            request,
            f"/users/{quote(user_id, safe='')}",
            {key: value for key, value in query.items() if key == "before"},
            PayoutFilter(user_id=user_id),
            USER_PAGE_SIZE,
        )
    except BadQuery as error:
        return render(request, "error.html", {"message": str(error)}, status=400)
    balances = await _operator(request).balances(user_id)
    return render(request, "user.html", {"user_id": user_id, "balances": balances, **page})


@signed_in
async def proof_image(request: Request) -> Response:
    """A proof image attached to a payout, as its media type; `X-Content-Type-Options: nosniff`
    (on every answer of the console) keeps a browser from reading it as anything else."""
    payout_id: int = request.path_params["payout_id"]
    image_id: int = request.path_params["image_id"]
    image = (
        await _operator(request).proof_image(payout_id, image_id)
        if max(payout_id, image_id) <= MAX_ENTRY_NUMBER
        else None
    )
    if image is None:
        return _not_found(request, f"Payout {payout_id} has no proof image {image_id}.")
    # Personal data: kept out of shared caches and off the disk.
    return Response(image.data, media_type=image.media_type, headers={"Cache-Control": "no-store"})
