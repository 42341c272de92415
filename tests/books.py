"""Checks of the ledger's invariants, shared by integration and end-to-end tests."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.database import Connection

MISMATCHED_WALLETS = """
SELECT a.owner, a.currency, a.balance, coalesce(sum(e.amount), 0) AS ledger
FROM accounts a LEFT JOIN ledger_entries e USING (account_id)
WHERE a.kind = 'wallet'
GROUP BY a.account_id HAVING a.balance <> coalesce(sum(e.amount), 0)
"""

UNBALANCED_PAYOUTS = """
SELECT payout_id FROM ledger_entries GROUP BY payout_id HAVING sum(amount) <> 0
UNION ALL
SELECT payout_id FROM payouts p WHERE status = 'credited'
  AND (SELECT count(*) FROM ledger_entries e WHERE e.payout_id = p.payout_id)
      <> CASE WHEN p.amount = 0 THEN 0 ELSE 2 END
UNION ALL
SELECT payout_id FROM payouts p
WHERE (SELECT count(*) FROM inventory_entries i WHERE i.payout_id = p.payout_id)
      <> CASE WHEN p.status = 'credited' THEN jsonb_array_length(p.items) ELSE 0 END
"""


async def assert_books_balance(conn: Connection) -> None:
    """Every payout's entries sum to zero, a credited payout has two (none for nothing), its items
    are granted exactly once, and every wallet equals the sum of its entries."""
    total = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_entries")
    assert total == Decimal(0)
    assert await conn.fetch(UNBALANCED_PAYOUTS) == []
    assert await conn.fetch(MISMATCHED_WALLETS) == []


async def wallet_balance(conn: Connection, user_id: str, currency: str) -> Decimal | None:
    balance: Decimal | None = await conn.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = $1 AND currency = $2",
        user_id,
        currency,
    )
    return balance
