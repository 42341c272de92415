"""Consuming a pending order in the crediting transaction of the payout that matches it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.orders import CONSUME_ORDER, LOCK_ORDER, OrderStatus, order_from_row
from schema.outcomes import Outcome

if TYPE_CHECKING:
    from schema.events import PayoutEvent
    from workers.database import Connection

__all__ = ["consume_order"]


async def consume_order(conn: Connection, event: PayoutEvent, payout_id: int) -> Outcome | None:
    """Consume the event's pending order for `payout_id`; else the refusal, consuming nothing."""
    assert event.order_id is not None  # PayoutEvent guarantees it when verify_order is set
    row = await conn.fetchrow(LOCK_ORDER, event.provider_instance, event.order_id)
    if row is None:
        return Outcome.ORDER_NOT_FOUND
    order = order_from_row(row)
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
