"""Read-only views for operators: one payout with its ledger and whether it balances, the
payouts matching a search, one user's balances and items, a proof image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from workers.database import Connection

__all__ = [
    "FIRST_OUTCOME",
    "PayoutFilter",
    "ProofImage",
    "ledger_check",
    "payout_details",
    "payout_key",
    "proof_image",
    "search_arguments",
    "search_payouts",
    "user_balances",
]

# The outcome a payout's first delivery was answered with. `outcome` is the outcome now: crediting
# a held payout overwrites it with `credited`. The row keeps no first outcome, but its times
# tell it: a payout credited by the transaction that recorded it has `credited_at` equal to
# `recorded_at` (both that transaction's now()); one held first is credited, if ever, by a later
# transaction.
FIRST_OUTCOME = (
    "CASE WHEN credited_at = recorded_at THEN 'credited' ELSE 'held_unknown_account' END"
)

PAYOUT = f"""
SELECT payout_id, provider_instance, transaction_id, event_id, protocol, user_id, amount,
       currency, items, price, order_id, status, outcome, {FIRST_OUTCOME} AS first_outcome,
       answer_code, balance_after, duplicate_deliveries, create_account, signature, attributes,
       raw_request, received_at, recorded_at, credited_at
FROM payouts WHERE provider_instance = $1 AND transaction_id = $2
"""  # noqa: S608 - composed of constant SQL only; every value is a bound parameter

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
SELECT provider_instance, transaction_id, event_id, outcome, user_id, amount, currency, items,
       price, order_id, signature, raw_request, received_at, recorded_at
FROM payout_conflicts WHERE provider_instance = $1 AND transaction_id = $2
ORDER BY conflict_id
"""

DEAD_LETTERS_OF_TRANSACTION = """
SELECT dead_letter_id, kind, error, attempts, first_failure_at, last_failure_at, status
FROM dead_letters WHERE provider_instance = $1 AND transaction_id = $2
ORDER BY recorded_at
"""

PAYOUT_KEY = """
SELECT provider_instance, transaction_id FROM payouts WHERE payout_id = $1
"""

PROOF_IMAGE = """
SELECT media_type, data FROM proof_images WHERE payout_id = $1 AND image_id = $2
"""

# Each filter is left out when its parameter is NULL; the keyset pages newest received first,
# from the payout numbered $8 (its received_at, then its number). Each page opens its own
# connection, so the statement is planned for its values: a time range or no filter reads
# payouts_by_received_at, a user id payouts_by_user (0005_payout_search.sql), a transaction id
# payouts_by_transaction; an instance, a status or an outcome alone filter the newest first.
SEARCH_PAYOUTS = """
SELECT payout_id, provider_instance, transaction_id, user_id, amount, currency, items, status,
       outcome, duplicate_deliveries, received_at, credited_at
FROM payouts
WHERE ($1::text IS NULL OR transaction_id = $1)
  AND ($2::text IS NULL OR user_id = $2)
  AND ($3::text IS NULL OR provider_instance = $3)
  AND ($4::text IS NULL OR status = $4)
  AND ($5::text IS NULL OR outcome = $5)
  AND ($6::timestamptz IS NULL OR received_at >= $6)
  AND ($7::timestamptz IS NULL OR received_at < $7)
  AND ($8::bigint IS NULL OR (received_at, payout_id) <
       (SELECT received_at, payout_id FROM payouts WHERE payout_id = $8))
ORDER BY received_at DESC, payout_id DESC
LIMIT $9
"""

WALLETS_OF_USER = """
SELECT currency, balance, created_at FROM accounts
WHERE kind = 'wallet' AND owner = $1 ORDER BY currency
"""

HELD_FOR_USER = """
SELECT payout_id, provider_instance, transaction_id, amount, currency, items, received_at
FROM payouts WHERE user_id = $1 AND status = 'held' ORDER BY payout_id
"""

INVENTORY_OF_USER = """
SELECT item_id, quantity FROM inventories WHERE user_id = $1 ORDER BY item_id
"""


@dataclass(frozen=True)
class PayoutFilter:
    """Which payouts a search finds; None lets every value through. `until` is exclusive."""

    transaction_id: str | None = None
    user_id: str | None = None
    provider_instance: str | None = None
    status: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ProofImage:
    media_type: str
    data: bytes


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
    details["dead_letters"] = [
        dict(row)
        for row in await conn.fetch(DEAD_LETTERS_OF_TRANSACTION, provider_instance, transaction_id)
    ]
    if details["payout"] is not None:
        details["ledger_check"] = ledger_check(
            details["payout"], details["ledger"], details["items_granted"]
        )
    return details


def ledger_check(
    payout: dict[str, Any], ledger: list[dict[str, Any]], items_granted: list[dict[str, Any]]
) -> dict[str, Any]:
    """Whether the payout's books are right: its entries sum to zero, a credited payout moved
    its amount to the wallet and granted its items once, a held one moved nothing. `problems`
    says what is wrong, one sentence each."""
    total = sum((entry["amount"] for entry in ledger), Decimal(0))
    to_wallets = sum((e["amount"] for e in ledger if e["kind"] == "wallet"), Decimal(0))
    granted = sum(item["quantity"] for item in items_granted)
    problems = []
    if total != 0:
        problems.append(f"its ledger entries sum to {total}, not 0")
    if payout["status"] == "credited":
        if to_wallets != payout["amount"]:
            amount = payout["amount"]
            problems.append(f"it credited {to_wallets} to wallets, not its amount {amount}")
        if granted != len(payout["items"]):
            problems.append(f"it granted {granted} items, not the {len(payout['items'])} it lists")
    elif ledger or items_granted:
        problems.append("it is held, yet it has ledger or inventory entries")
    return {"sum": total, "balanced": not problems, "problems": problems}


async def payout_key(conn: Connection, payout_id: int) -> tuple[str, str] | None:
    """The provider instance and transaction id of payout `payout_id`, if there is one."""
    row = await conn.fetchrow(PAYOUT_KEY, payout_id)
    return (row["provider_instance"], row["transaction_id"]) if row else None


async def search_payouts(
    conn: Connection, filters: PayoutFilter, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` payouts matching `filters`, newest received first, after payout `before_id`
    if given."""
    rows = await conn.fetch(SEARCH_PAYOUTS, *search_arguments(filters, before_id, limit))
    return [_plain(row) for row in rows]


def search_arguments(filters: PayoutFilter, before_id: int | None, limit: int) -> tuple[Any, ...]:
    """The parameters of SEARCH_PAYOUTS, in its order."""
    return (
        filters.transaction_id,
        filters.user_id,
        filters.provider_instance,
        filters.status,
        filters.outcome,
        filters.since,
        filters.until,
        before_id,
        limit,
    )


async def proof_image(conn: Connection, payout_id: int, image_id: int) -> ProofImage | None:
    row = await conn.fetchrow(PROOF_IMAGE, payout_id, image_id)
    return ProofImage(row["media_type"], bytes(row["data"])) if row else None


async def user_balances(conn: Connection, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "wallets": [dict(row) for row in await conn.fetch(WALLETS_OF_USER, user_id)],
        "held_payouts": [_plain(row) for row in await conn.fetch(HELD_FOR_USER, user_id)],
        "inventory": [dict(row) for row in await conn.fetch(INVENTORY_OF_USER, user_id)],
    }
