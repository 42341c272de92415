"""The game's pending orders: their shape, and the statements that keep them in `pending_orders`.

The ingress registers, shows and cancels them (the orders API, `ingress/pending_orders.py`); the
worker consumes one in the crediting transaction of the payout that matches it
(`workers/orders.py`), so an order pays out at most once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

__all__ = [
    "CANCEL_ORDER",
    "CONSUME_ORDER",
    "INSERT_ORDER",
    "LOCK_ORDER",
    "SELECT_ORDER",
    "Order",
    "OrderStatus",
    "RegisterResult",
    "order_from_row",
]


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONSUMED = "consumed"
    CANCELLED = "cancelled"


class RegisterResult(StrEnum):
    REGISTERED = "registered"
    ALREADY_REGISTERED = "already_registered"
    CONFLICT = "conflict"
    """Another order already has this id."""


@dataclass(frozen=True)
class Order:
    provider_instance: str
    order_id: str
    user_id: str
    # None: not part of the order, so not compared with the callback.
    items: tuple[str, ...] | None = None
    amount: Decimal | None = None
    status: OrderStatus = OrderStatus.PENDING
    registered_at: datetime | None = None
    consumed_by: int | None = None

    def same_terms(self, other: Order) -> bool:
        return (self.user_id, self.items, self.amount) == (other.user_id, other.items, other.amount)


INSERT_ORDER = """
INSERT INTO pending_orders (provider_instance, order_id, user_id, items, amount)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (provider_instance, order_id) DO NOTHING
RETURNING registered_at
"""

SELECT_ORDER = """
SELECT provider_instance, order_id, user_id, items, amount, status, registered_at, consumed_by
FROM pending_orders WHERE provider_instance = $1 AND order_id = $2
"""

LOCK_ORDER = SELECT_ORDER + " FOR UPDATE"

CANCEL_ORDER = """
UPDATE pending_orders SET status = 'cancelled', closed_at = now()
WHERE provider_instance = $1 AND order_id = $2 AND status = 'pending'
RETURNING order_id
"""

CONSUME_ORDER = """
UPDATE pending_orders SET status = 'consumed', consumed_by = $3, closed_at = now()
WHERE provider_instance = $1 AND order_id = $2
"""


class Row(Protocol):
    """A database row read by column name, as asyncpg's Record is."""

    def __getitem__(self, column: str) -> Any: ...


def order_from_row(row: Row) -> Order:
    """The order a `SELECT_ORDER` row describes."""
    items = json.loads(row["items"]) if row["items"] is not None else None
    return Order(
        provider_instance=row["provider_instance"],
        order_id=row["order_id"],
        user_id=row["user_id"],
        items=tuple(items) if items is not None else None,
        amount=row["amount"],
        status=OrderStatus(row["status"]),
        registered_at=row["registered_at"],
        consumed_by=row["consumed_by"],
    )
