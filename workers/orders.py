"""The game's pending orders: registered before the provider's callback, consumed by one payout.

Registration is idempotent (the same order twice is fine, a different one under the same id is
not); a payout consumes its order in the crediting transaction, so an order pays out at most once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from schema.outcomes import Outcome

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    import asyncpg

    from schema.events import PayoutEvent
    from workers.database import Connection

__all__ = [
    "Order",
    "OrderStatus",
    "RegisterResult",
    "cancel_order",
    "consume_order",
    "find_order",
    "register_order",
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


def _order(row: asyncpg.Record) -> Order:
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


async def register_order(conn: Connection, order: Order) -> tuple[RegisterResult, Order]:
    """Register `order`, or tell how it relates to the order already registered under its id."""
    items = json.dumps(list(order.items)) if order.items is not None else None
    registered_at = await conn.fetchval(
        INSERT_ORDER, order.provider_instance, order.order_id, order.user_id, items, order.amount
    )
    if registered_at is not None:
        return RegisterResult.REGISTERED, await _existing(conn, order)
    existing = await _existing(conn, order)
    if existing.same_terms(order):
        return RegisterResult.ALREADY_REGISTERED, existing
    return RegisterResult.CONFLICT, existing


async def _existing(conn: Connection, order: Order) -> Order:
    found = await find_order(conn, order.provider_instance, order.order_id)
    if found is None:
        raise RuntimeError(
            f"order {order.provider_instance}/{order.order_id} vanished while registering it"
        )
    return found


async def find_order(conn: Connection, provider_instance: str, order_id: str) -> Order | None:
    row = await conn.fetchrow(SELECT_ORDER, provider_instance, order_id)
    return _order(row) if row is not None else None


async def cancel_order(conn: Connection, provider_instance: str, order_id: str) -> bool:
    """Cancel a pending order; False if there is none pending under that id."""
    return await conn.fetchval(CANCEL_ORDER, provider_instance, order_id) is not None


async def consume_order(conn: Connection, event: PayoutEvent, payout_id: int) -> Outcome | None:
    """Consume the event's pending order for `payout_id`; else the refusal, consuming nothing."""
    assert event.order_id is not None  # PayoutEvent guarantees it when verify_order is set
    row = await conn.fetchrow(LOCK_ORDER, event.provider_instance, event.order_id)
    if row is None:
        return Outcome.ORDER_NOT_FOUND
    order = _order(row)
    if order.status is not OrderStatus.PENDING:
        return Outcome.ORDER_NOT_FOUND
    matches = (
        order.user_id == event.user_id
        and (order.items is None or order.items == event.items)
        and (order.amount is None or order.amount == event.price)
    )
    if not matches:
        return Outcome.ORDER_MISMATCH
    await conn.execute(CONSUME_ORDER, event.provider_instance, event.order_id, payout_id)
    return None
