"""What an order registered for a provider instance holds, checked the same way for the internal
HTTP API and the `payouts order register` command (docs/orders.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingress import fields
from ingress.protocols import protocol_class
from ingress.verdicts import Rejection
from schema.errors import PayoutsError
from schema.orders import Order

if TYPE_CHECKING:
    from schema.settings import Settings

__all__ = ["OrderRefused", "checked_order"]


class OrderRefused(PayoutsError, ValueError):
    """The order cannot be registered for that instance; the message says why."""


def checked_order(
    settings: Settings,
    provider_instance: str,
    order_id: str,
    user_id: str,
    items: list[str] | None,
    amount: str | None,
) -> Order:
    instance = next((p for p in settings.providers if p.name == provider_instance), None)
    if instance is None:
        raise OrderRefused(f"no provider instance named {provider_instance!r}")
    protocol = protocol_class(instance.protocol)
    terms = protocol.order_terms
    if terms is None or not instance.verify_orders:
        raise OrderRefused(f"provider instance {provider_instance!r} does not verify orders")
    for term, value in (("items", items), ("amount", amount)):
        if (term in terms) != (value is not None):
            needed = "needs" if term in terms else "takes no"
            raise OrderRefused(
                f"an order for {provider_instance!r} ({instance.protocol}) {needed} {term}"
            )
    try:
        return Order(
            provider_instance=provider_instance,
            order_id=fields.text("order_id", order_id, max_length=fields.MAX_ID_LENGTH),
            user_id=fields.text("user_id", user_id, max_length=fields.MAX_ID_LENGTH),
            items=_items(items, protocol.items_per_order),
            amount=(
                fields.amount(
                    "amount",
                    amount,
                    decimal_places=instance.amount_decimal_places,
                    maximum=instance.max_amount,
                    allow_zero=True,
                )
                if amount is not None
                else None
            ),
        )
    except Rejection as rejection:
        raise OrderRefused(rejection.detail) from None


def _items(items: list[str] | None, limit: int) -> tuple[str, ...] | None:
    if items is None:
        return None
    if not 1 <= len(items) <= limit:
        raise OrderRefused(f"items must list 1 to {limit} item ids")
    return tuple(fields.text("items", item, max_length=fields.MAX_ID_LENGTH) for item in items)
