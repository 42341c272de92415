"""Read-only views for operators: one payout with its ledger, one user's balances and items."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from workers.database import Connection

__all__ = ["payout_details", "user_balances"]

PAYOUT = """
SELECT payout_id, provider_instance, transaction_id, event_id, protocol, user_id, amount,
       currency, items, price, order_id, status, outcome, answer_code, balance_after,
       duplicate_deliveries, attributes, raw_request, received_at, recorded_at, credited_at
FROM payouts WHERE provider_instance = $1 AND transaction_id = $2
"""

LEDGER_OF_PAYOUT = """
SELECT e.entry_id, a.kind, a.owner, a.currency, e.amount, e.created_at
FROM ledger_entries e JOIN accounts a USING (account_id)
WHERE e.payout_id = $1 ORDER BY e.entry_id
"""

ITEMS_OF_PAYOUT = """
SELECT entry_id, item_id, quantity, created_at FROM inventory_entries
WHERE payout_id = $1 ORDER BY entry_id
"""

ATTACHED_PROOFS = """
SELECT image_id, media_type, length(data) AS bytes, sha256, attached_at FROM proof_images
WHERE payout_id = $1 ORDER BY image_id
"""

REFUSED_DELIVERIES = """
SELECT event_id, outcome, user_id, amount, currency, items, price, order_id, raw_request,
       received_at, recorded_at
FROM payout_conflicts WHERE provider_instance = $1 AND transaction_id = $2
ORDER BY conflict_id
"""

WALLETS_OF_USER = """
SELECT currency, balance, created_at FROM accounts
WHERE kind = 'wallet' AND owner = $1 ORDER BY currency
"""

HELD_FOR_USER = """
SELECT provider_instance, transaction_id, amount, currency, items, received_at FROM payouts
WHERE user_id = $1 AND status = 'held' ORDER BY payout_id
"""

INVENTORY_OF_USER = """
SELECT item_id, quantity FROM inventories WHERE user_id = $1 ORDER BY item_id
"""


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    record = dict(row)
    for key in ("attributes", "raw_request", "items"):
        if isinstance(record.get(key), str):
            record[key] = json.loads(record[key])
    return record


async def payout_details(
    conn: Connection, provider_instance: str, transaction_id: str
) -> dict[str, Any] | None:
    """The payout, its ledger entries, and deliveries refused under its transaction id."""
    payout = await conn.fetchrow(PAYOUT, provider_instance, transaction_id)
    refused = [
        _plain(row)
        for row in await conn.fetch(REFUSED_DELIVERIES, provider_instance, transaction_id)
    ]
    if payout is None and not refused:
        return None
    details: dict[str, Any] = {"payout": _plain(payout) if payout else None, "refused": refused}
    for key, query in (
        ("ledger", LEDGER_OF_PAYOUT),
        ("items_granted", ITEMS_OF_PAYOUT),
        ("proof_images", ATTACHED_PROOFS),
    ):
        details[key] = (
            [dict(row) for row in await conn.fetch(query, payout["payout_id"])] if payout else []
        )
    return details


async def user_balances(conn: Connection, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "wallets": [dict(row) for row in await conn.fetch(WALLETS_OF_USER, user_id)],
        "held_payouts": [_plain(row) for row in await conn.fetch(HELD_FOR_USER, user_id)],
        "inventory": [dict(row) for row in await conn.fetch(INVENTORY_OF_USER, user_id)],
    }
