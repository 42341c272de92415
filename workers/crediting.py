"""Apply one payout event inside the caller's Postgres transaction, exactly once.

The (provider instance, transaction id) unique key is claimed first, so every later statement runs
only for the one delivery that owns the transaction. Rows are then locked in one order (pending
order, then wallet), so concurrent workers cannot deadlock, and the funding account is append-only
in the ledger, so it never becomes a hot row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schema.outcomes import Outcome
from workers.orders import consume_order
from workers.payout_rows import PayoutRow

if TYPE_CHECKING:
    from collections.abc import Mapping
    from decimal import Decimal

    import asyncpg

    from schema.events import PayoutEvent
    from workers.database import Connection

__all__ = [
    "CREATE_WALLET",
    "LOCK_WALLET_CREATION",
    "CreditResult",
    "PayoutToCredit",
    "apply_payout",
    "credit_held_payouts",
]

# Serializes, per wallet, a payout that may be held with the operator creating that wallet:
# without it each could miss the other's uncommitted row and leave the payout held for ever.
# Taken before any row lock, in both paths, so the lock order is always the same. A hash
# collision only serializes two unrelated wallets a little; it cannot break correctness.
LOCK_WALLET_CREATION = """
SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))
"""

# Parameters: a `PayoutRow`, in order.
CLAIM_TRANSACTION = """
INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                     currency, signature, create_account, status, outcome, answer_code,
                     attributes, raw_request, received_at, items, price, order_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'held', 'held_unknown_account', $10,
        $11::jsonb, $12::jsonb, $13, $14::jsonb, $15, $16)
ON CONFLICT DO NOTHING
RETURNING payout_id
"""

# A claim whose pending order refused it is taken back, so the callback changes nothing.
RELEASE_CLAIM = """
DELETE FROM payouts WHERE payout_id = $1
"""

LOCK_EXISTING_TRANSACTION = """
SELECT payout_id, event_id, user_id, amount, currency, items, price, order_id, status,
       create_account, balance_after
FROM payouts WHERE provider_instance = $1 AND transaction_id = $2
FOR UPDATE
"""

TRANSACTION_WITH_SIGNATURE = """
SELECT transaction_id FROM payouts WHERE provider_instance = $1 AND signature = $2
"""

COUNT_DUPLICATE_DELIVERY = """
UPDATE payouts SET duplicate_deliveries = duplicate_deliveries + 1 WHERE payout_id = $1
RETURNING balance_after
"""

RECORD_REFUSED_DELIVERY = """
INSERT INTO payout_conflicts (provider_instance, transaction_id, event_id, outcome, user_id,
                              amount, currency, signature, raw_request, received_at, items,
                              price, order_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11::jsonb, $12, $13)
ON CONFLICT (event_id) DO NOTHING
"""

CREATE_WALLET = """
INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', $1, $2)
ON CONFLICT (kind, owner, currency) DO NOTHING
RETURNING account_id
"""

CREDIT_WALLET = """
UPDATE accounts SET balance = balance + $3
WHERE kind = 'wallet' AND owner = $1 AND currency = $2
RETURNING account_id, balance
"""

CREATE_FUNDING_ACCOUNT = """
INSERT INTO accounts (kind, owner, currency) VALUES ('funding', $1, $2)
ON CONFLICT (kind, owner, currency) DO NOTHING
"""

FUNDING_ACCOUNT_ID = """
SELECT account_id FROM accounts WHERE kind = 'funding' AND owner = $1 AND currency = $2
"""

WRITE_LEDGER = """
INSERT INTO ledger_entries (payout_id, account_id, amount)
VALUES ($1, $2, $4), ($1, $3, -$4::numeric)
"""

GRANT_ITEMS = """
INSERT INTO inventory_entries (payout_id, user_id, item_id, quantity)
SELECT $1, $2, item_id, 1 FROM unnest($3::text[]) AS item_id
"""

MARK_CREDITED = """
UPDATE payouts SET status = 'credited', outcome = 'credited', balance_after = $2,
                   credited_at = now()
WHERE payout_id = $1
"""

LOCK_HELD_FOR_WALLET = """
SELECT payout_id, provider_instance, amount, items
FROM payouts WHERE user_id = $1 AND currency = $2 AND status = 'held'
ORDER BY payout_id
FOR UPDATE
"""


@dataclass(frozen=True)
class CreditResult:
    outcome: Outcome
    payout_id: int | None
    balance_after: Decimal | None
    # True when the payout's record was written by this very event (not by an earlier delivery
    # of the same transaction): a held payout is dead-lettered for review once, not per re-send.
    own_record: bool = False
    # The currency of `balance_after` where it is not the event's: a conflict's recorded payout.
    recorded_currency: str | None = None


@dataclass(frozen=True)
class PayoutToCredit:
    """What crediting a payout moves: its amount and items (a held one, or one just claimed)."""

    payout_id: int
    provider_instance: str
    amount: Decimal
    items: tuple[str, ...] = ()


async def apply_payout(
    conn: Connection, event: PayoutEvent, funding: Mapping[tuple[str, str], int] | None = None
) -> CreditResult:
    """Record and credit `event`; the caller owns the transaction and commits before acking.

    `funding`: funding account ids by (provider instance, currency) that the caller has looked
    up or created in this transaction; an account not in it is created when first paid from."""
    if not event.create_account:
        await conn.execute(LOCK_WALLET_CREATION, event.user_id, event.currency)
    if event.may_record_new:
        payout_id = await _claim(conn, event)
        if payout_id is not None:
            return await _apply_claimed(conn, payout_id, event, funding)

    existing = await conn.fetchrow(
        LOCK_EXISTING_TRANSACTION, event.provider_instance, event.transaction_id
    )
    if existing is None:
        if not event.may_record_new:
            return CreditResult(Outcome.EXPIRED, None, None)
        owner = await conn.fetchval(
            TRANSACTION_WITH_SIGNATURE, event.provider_instance, event.signature
        )
        if owner is None:
            # Neither key matched although the insert conflicted: only possible if rows were
            # deleted underneath us. Fail loudly; the message is retried, nothing is credited.
            raise RuntimeError(
                f"{event.provider_instance}/{event.transaction_id}: insert conflicted but no "
                "payout holds its transaction id or signature"
            )
        await _record_refused(conn, event, Outcome.SIGNATURE_REUSED)
        return CreditResult(Outcome.SIGNATURE_REUSED, None, None)

    if not _same_payout(existing, event):
        await _record_refused(conn, event, Outcome.CONFLICT)
        # With the balance the recorded payout earned: a protocol may answer that the
        # transaction is settled (spec 001's FAQ) while the conflict waits for an operator.
        return CreditResult(
            Outcome.CONFLICT,
            existing["payout_id"],
            existing["balance_after"],
            recorded_currency=existing["currency"],
        )
    own_record = existing["event_id"] == event.event_id
    if existing["status"] == "held":
        result = await _credit_new_or_held(
            conn, existing["payout_id"], event, existing["create_account"], funding
        )
        return CreditResult(result.outcome, result.payout_id, result.balance_after, own_record)
    balance_after = await conn.fetchval(COUNT_DUPLICATE_DELIVERY, existing["payout_id"])
    return CreditResult(Outcome.DUPLICATE, existing["payout_id"], balance_after, own_record)


async def _claim(conn: Connection, event: PayoutEvent) -> int | None:
    """Insert the payout as held; None if its transaction id or signature is already taken."""
    payout_id: int | None = await conn.fetchval(CLAIM_TRANSACTION, *PayoutRow.of(event))
    return payout_id


async def _apply_claimed(
    conn: Connection,
    payout_id: int,
    event: PayoutEvent,
    funding: Mapping[tuple[str, str], int] | None,
) -> CreditResult:
    if event.verify_order:
        refusal = await consume_order(conn, event, payout_id)
        if refusal is not None:
            await conn.execute(RELEASE_CLAIM, payout_id)
            await _record_refused(conn, event, refusal)
            return CreditResult(refusal, None, None)
    result = await _credit_new_or_held(conn, payout_id, event, event.create_account, funding)
    return CreditResult(result.outcome, result.payout_id, result.balance_after, own_record=True)


def _same_payout(existing: asyncpg.Record, event: PayoutEvent) -> bool:
    same: bool = (
        existing["user_id"] == event.user_id
        and existing["amount"] == event.amount
        and existing["currency"] == event.currency
        and json.loads(existing["items"]) == list(event.items)
        and existing["price"] == event.price
        and existing["order_id"] == event.order_id
    )
    return same


async def _credit_new_or_held(
    conn: Connection,
    payout_id: int,
    event: PayoutEvent,
    create_account: bool,
    funding: Mapping[tuple[str, str], int] | None,
) -> CreditResult:
    if create_account:
        await conn.execute(CREATE_WALLET, event.user_id, event.currency)
    balance = await _credit(
        conn,
        PayoutToCredit(payout_id, event.provider_instance, event.amount, event.items),
        event.user_id,
        event.currency,
        funding,
    )
    if balance is None:
        return CreditResult(Outcome.HELD_UNKNOWN_ACCOUNT, payout_id, None)
    return CreditResult(Outcome.CREDITED, payout_id, balance)


async def _credit(
    conn: Connection,
    payout: PayoutToCredit,
    user_id: str,
    currency: str,
    funding: Mapping[tuple[str, str], int] | None = None,
) -> Decimal | None:
    """Move the amount from the instance's funding account to the wallet and grant the items;
    None if the wallet does not exist. A zero amount still needs the wallet (the user exists)."""
    wallet = await conn.fetchrow(CREDIT_WALLET, user_id, currency, payout.amount)
    if wallet is None:
        return None
    if payout.amount:
        funding_account_id = (funding or {}).get((payout.provider_instance, currency))
        if funding_account_id is None:
            await conn.execute(CREATE_FUNDING_ACCOUNT, payout.provider_instance, currency)
            funding_account_id = await conn.fetchval(
                FUNDING_ACCOUNT_ID, payout.provider_instance, currency
            )
        await conn.execute(
            WRITE_LEDGER, payout.payout_id, wallet["account_id"], funding_account_id, payout.amount
        )
    if payout.items:
        await conn.execute(GRANT_ITEMS, payout.payout_id, user_id, list(payout.items))
    balance: Decimal = wallet["balance"]
    await conn.execute(MARK_CREDITED, payout.payout_id, balance)
    return balance


async def _record_refused(conn: Connection, event: PayoutEvent, outcome: Outcome) -> None:
    row = PayoutRow.of(event)
    await conn.execute(
        RECORD_REFUSED_DELIVERY,
        row.provider_instance,
        row.transaction_id,
        row.event_id,
        outcome.value,
        row.user_id,
        row.amount,
        row.currency,
        row.signature,
        row.raw_request,
        row.received_at,
        row.items,
        row.price,
        row.order_id,
    )


async def credit_held_payouts(
    conn: Connection, user_id: str, currency: str
) -> list[PayoutToCredit]:
    """Credit the payouts held for this wallet, oldest first, in the caller's transaction."""
    credited: list[PayoutToCredit] = []
    for row in await conn.fetch(LOCK_HELD_FOR_WALLET, user_id, currency):
        payout = PayoutToCredit(
            row["payout_id"],
            row["provider_instance"],
            row["amount"],
            tuple(json.loads(row["items"])),
        )
        balance = await _credit(conn, payout, user_id, currency)
        if balance is None:
            break
        credited.append(payout)
    return credited
