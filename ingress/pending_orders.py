"""Registering, finding and cancelling the game's pending orders, for the orders API.

Registration is idempotent: the same order twice is fine, a different one under the same id is not.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from schema.orders import (
    CANCEL_ORDER,
    INSERT_ORDER,
    SELECT_ORDER,
    Order,
    RegisterResult,
    order_from_row,
)

if TYPE_CHECKING:
    import asyncpg

    Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

__all__ = ["cancel_order", "find_order", "register_order"]


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
    return order_from_row(row) if row is not None else None


async def cancel_order(conn: Connection, provider_instance: str, order_id: str) -> bool:
    """Cancel a pending order; False if there is none pending under that id."""
    return await conn.fetchval(CANCEL_ORDER, provider_instance, order_id) is not None
