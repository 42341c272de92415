"""Read-only views for operators: one payout with its ledger, one user's balances."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from workers.database import Connection

__all__ = ["payout_details", "user_balances"]

PAYOUT = """
SELECT payout_id, provider_instance, transaction_id, event_id, protocol, user_id, amount,
       currency, status, outcome, answer_code, balance_after, duplicate_deliveries, attributes,
       raw_request, received_at, recorded_at, credited_at
FROM payouts WHERE provider_instance = $1 AND transaction_id = $2
"""

LEDGER_OF_PAYOUT = """
SELECT e.entry_id, a.kind, a.owner, a.currency, e.amount, e.created_at
FROM ledger_entries e JOIN accounts a USING (account_id)
WHERE e.payout_id = $1 ORDER BY e.entry_id
"""

REFUSED_DELIVERIES = """
SELECT event_id, outcome, user_id, amount, currency, raw_request, received_at, recorded_at
FROM payout_conflicts WHERE provider_instance = $1 AND transaction_id = $2
ORDER BY conflict_id
"""

WALLETS_OF_USER = """
SELECT currency, balance, created_at FROM accounts
WHERE kind = 'wallet' AND owner = $1 ORDER BY currency
"""

HELD_FOR_USER = """
SELECT provider_instance, transaction_id, amount, currency, received_at FROM payouts
WHERE user_id = $1 AND status = 'held' ORDER BY payout_id
"""


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    record = dict(row)
    for key in ("attributes", "raw_request"):
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
    details["ledger"] = (
        [dict(row) for row in await conn.fetch(LEDGER_OF_PAYOUT, payout["payout_id"])]
        if payout
        else []
    )
    return details


async def user_balances(conn: Connection, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "wallets": [dict(row) for row in await conn.fetch(WALLETS_OF_USER, user_id)],
        "held_payouts": [dict(row) for row in await conn.fetch(HELD_FOR_USER, user_id)],
    }
