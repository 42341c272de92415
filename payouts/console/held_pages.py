"""The Held payouts page: each payout held for a wallet that does not exist, with why, filtered
by provider instance and user, and "create the account", which credits them through the same
code path as `payouts account create`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payouts.actions.listings import held_payouts
from payouts.actions.operator import AccountRefused, Operator
from payouts.console.access import signed_in
from payouts.console.acting import ACTION_FAILURES, LIST_PAGE_SIZE, acting, failed, link, query_of
from payouts.console.query_filters import entry_number
from payouts.console.rendering import render

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import Settings

__all__ = ["create_held_account", "held"]

FILTERS = ("provider", "user")


async def _page(request: Request, query: dict[str, str]) -> dict[str, Any]:
    before = entry_number(query, "before")
    settings: Settings = request.app.state.settings
    rows = await held_payouts(
        settings, query.get("provider"), query.get("user"), before, LIST_PAGE_SIZE + 1
    )
    filters = {key: value for key, value in query.items() if key != "before"}
    return {
        "query": filters,
        "rows": rows[:LIST_PAGE_SIZE],
        "newest_link": link("/held", filters) if before is not None else None,
        "older_link": (
            link("/held", filters, before=str(rows[LIST_PAGE_SIZE - 1].payout_id))
            if len(rows) > LIST_PAGE_SIZE
            else None
        ),
    }


@signed_in
async def held(request: Request) -> Response:
    query = query_of(request, (*FILTERS, "before"))
    return render(request, "held.html", await _page(request, query))


@signed_in
async def create_held_account(request: Request) -> Response:
    form, actor = await acting(request, "account.create")
    user = form.get("user", "").strip()
    currency = form.get("currency", "").strip()
    # The list shown after it keeps the page's filters (the user's under another name).
    shown = {"provider": form.get("provider", ""), "user": form.get("user_filter", "")}
    query = {key: value.strip() for key, value in shown.items() if value.strip()}
    try:
        created = await Operator(request.app.state.settings).create_account(user, currency, actor)
    except AccountRefused as refused:
        return render(request, "error.html", {"message": str(refused)}, status=400)
    except ACTION_FAILURES as error:
        return failed(request, "account.create", error)
    return render(request, "held.html", {**await _page(request, query), "created": created})
