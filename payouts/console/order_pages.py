"""The Orders page: the game's orders (specs 001 and 004), pending, consumed or cancelled,
filtered by state, provider instance and user, and cancelling a pending one (the same action as
`payouts order cancel`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payouts.actions.listings import orders
from payouts.actions.operator import Operator
from payouts.console.access import signed_in
from payouts.console.acting import ACTION_FAILURES, LIST_PAGE_SIZE, acting, failed, link, query_of
from payouts.console.rendering import render
from schema.orders import OrderStatus

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import Settings

__all__ = ["cancel", "order_list"]

FILTERS = ("state", "provider", "user")
STATES = [state.value for state in OrderStatus]
# The order a page starts after: its provider instance and its id.
AFTER = ("after_provider", "after_order")


async def _page(request: Request, query: dict[str, str]) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    after = (query["after_provider"], query["after_order"]) if set(AFTER) <= set(query) else None
    rows = await orders(
        settings,
        query.get("state"),
        query.get("provider"),
        query.get("user"),
        after,
        LIST_PAGE_SIZE + 1,
    )
    filters = {key: value for key, value in query.items() if key not in AFTER}
    last = rows[LIST_PAGE_SIZE - 1] if len(rows) > LIST_PAGE_SIZE else None
    return {
        "query": filters,
        "states": STATES,
        "rows": rows[:LIST_PAGE_SIZE],
        "newest_link": link("/orders", filters) if after else None,
        "older_link": (
            link(
                "/orders", filters, after_provider=last.provider_instance, after_order=last.order_id
            )
            if last
            else None
        ),
    }


@signed_in
async def order_list(request: Request) -> Response:
    query = query_of(request, (*FILTERS, *AFTER))
    if query.get("state", STATES[0]) not in STATES:
        message = f"state: one of {', '.join(STATES)}"
        return render(
            request, "orders.html", {"query": query, "states": STATES, "error": message}, status=400
        )
    return render(request, "orders.html", await _page(request, query))


@signed_in
async def cancel(request: Request) -> Response:
    form, actor = await acting(request, "order.cancel")
    provider = form.get("provider", "").strip()
    order_id = form.get("order_id", "").strip()
    if not (provider and order_id):
        return render(
            request,
            "error.html",
            {"message": "Name the order: its provider instance and id."},
            status=400,
        )
    try:
        cancelled = await Operator(request.app.state.settings).cancel_order(
            provider, order_id, actor
        )
    except ACTION_FAILURES as error:
        return failed(request, "order.cancel", error)
    context = await _page(request, {})
    if not cancelled:
        context["error"] = (
            f"No pending order {order_id!r} of {provider!r}: it was consumed or cancelled already."
        )
        return render(request, "orders.html", context, status=409)
    return render(request, "orders.html", {**context, "cancelled": f"{provider} {order_id}"})
