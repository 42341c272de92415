"""Creating wallets by hand, for instances whose policy requires them to exist first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.crediting import (
    CREATE_WALLET,
    LOCK_WALLET_CREATION,
    PayoutToCredit,
    credit_held_payouts,
)

if TYPE_CHECKING:
    from workers.database import Connection

__all__ = ["create_wallet"]


async def create_wallet(
    conn: Connection, user_id: str, currency: str
) -> tuple[bool, list[PayoutToCredit]]:
    """Create the wallet if missing and credit the payouts held for it, in one transaction.

    Returns whether the wallet was new, and the held payouts now credited.
    """
    async with conn.transaction():
        await conn.execute(LOCK_WALLET_CREATION, user_id, currency)
        created = await conn.fetchval(CREATE_WALLET, user_id, currency) is not None
        return created, await credit_held_payouts(conn, user_id, currency)
