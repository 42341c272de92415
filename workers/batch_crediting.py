"""Apply many payout events in one Postgres transaction, each with the outcome it would have had
alone.

New payouts to wallets that may be created (the common case) take the set-based path: one
statement claims all their transaction ids, one creates the missing wallets, one locks the wallets,
one adds each wallet's total, one writes the ledger, one marks them credited, whatever the batch
size. Everything else in the batch goes through `apply_payout` afterwards, in the same transaction:
re-sends and in-batch duplicates (which find the record the set-based path just wrote), payouts
that need an existing wallet or a pending order, and old requests.

Locks are taken in one order in every batch: first the wallet-creation advisory lock of every
wallet the batch names, sorted by lock key, so that no other batch creates or credits those
wallets meanwhile (this covers wallets that do not exist yet, which no row lock can); then the
payouts' unique keys sorted by transaction; then the wallet rows sorted by wallet. Two workers
crediting overlapping wallets therefore queue behind each other instead of deadlocking; the rare
deadlock left (two batches carrying the same transaction, or the same pending orders, at once) is
detected by Postgres and retried like any transient failure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import MAX_PREC, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import TYPE_CHECKING

from schema.outcomes import Outcome
from workers.crediting import CreditResult, apply_payout

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schema.events import PayoutEvent
    from workers.database import Connection

__all__ = ["apply_batch"]

# The advisory locks of crediting.LOCK_WALLET_CREATION, for many wallets in one statement: the
# aggregate takes them one by one in the sorted subquery's order.
LOCK_WALLETS_CREATION = """
SELECT count(pg_advisory_xact_lock(k.owner_key, k.currency_key))
FROM (SELECT DISTINCT hashtext(t.owner) AS owner_key, hashtext(t.currency) AS currency_key
      FROM unnest($1::text[], $2::text[]) AS t(owner, currency)
      ORDER BY 1, 2) AS k
"""

CLAIM_TRANSACTIONS = """
INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                     currency, signature, create_account, status, outcome, answer_code,
                     attributes, raw_request, received_at, items, price, order_id)
SELECT t.provider_instance, t.transaction_id, t.event_id, t.protocol, t.user_id, t.amount,
       t.currency, t.signature, true, 'held', 'held_unknown_account', t.answer_code,
       t.attributes::jsonb, t.raw_request::jsonb, t.received_at, t.items::jsonb, t.price,
       t.order_id
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::numeric[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
            $13::text[], $14::numeric[], $15::text[])
     AS t(provider_instance, transaction_id, event_id, protocol, user_id, amount, currency,
          signature, answer_code, attributes, raw_request, received_at, items, price, order_id)
ORDER BY t.provider_instance, t.transaction_id
ON CONFLICT DO NOTHING
RETURNING payout_id, event_id
"""

# Wallets and funding accounts alike ($1 is the kind), each created once whoever asks first.
CREATE_ACCOUNTS = """
INSERT INTO accounts (kind, owner, currency)
SELECT $1, t.owner, t.currency FROM unnest($2::text[], $3::text[]) AS t(owner, currency)
ORDER BY t.owner, t.currency
ON CONFLICT (kind, owner, currency) DO NOTHING
"""

LOCK_WALLETS = """
SELECT a.account_id FROM accounts a
JOIN unnest($1::text[], $2::text[]) AS t(owner, currency)
  ON a.kind = 'wallet' AND a.owner = t.owner AND a.currency = t.currency
ORDER BY a.owner, a.currency
FOR UPDATE OF a
"""

CREDIT_WALLETS = """
UPDATE accounts a SET balance = a.balance + t.total
FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(owner, currency, total)
WHERE a.kind = 'wallet' AND a.owner = t.owner AND a.currency = t.currency
RETURNING a.account_id, a.owner, a.currency, a.balance
"""

FUNDING_ACCOUNT_IDS = """
SELECT a.account_id, a.owner, a.currency FROM accounts a
JOIN unnest($1::text[], $2::text[]) AS t(owner, currency)
  ON a.kind = 'funding' AND a.owner = t.owner AND a.currency = t.currency
"""

WRITE_LEDGER = """
INSERT INTO ledger_entries (payout_id, account_id, amount)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[])
"""

GRANT_ITEMS = """
INSERT INTO inventory_entries (payout_id, user_id, item_id, quantity)
SELECT t.payout_id, t.user_id, t.item_id, 1
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(payout_id, user_id, item_id)
"""

MARK_CREDITED = """
UPDATE payouts p SET status = 'credited', outcome = 'credited', balance_after = t.balance_after,
                     credited_at = now()
FROM unnest($1::bigint[], $2::numeric[]) AS t(payout_id, balance_after)
WHERE p.payout_id = t.payout_id
"""

Wallet = tuple[str, str]  # (user id, currency)

# Sums as exact as Postgres's NUMERIC: the default context would round past 28 digits, and a
# result that still had to be rounded raises instead of crediting a rounded amount.
EXACT = Context(prec=MAX_PREC, traps=[Inexact, InvalidOperation])


@dataclass(frozen=True)
class _Claimed:
    index: int  # the event's position in the batch
    payout_id: int
    event: PayoutEvent

    @property
    def wallet(self) -> Wallet:
        return (self.event.user_id, self.event.currency)


async def apply_batch(conn: Connection, events: Sequence[PayoutEvent]) -> list[CreditResult]:
    """Record and credit every event, in the caller's transaction; results in `events`' order.

    The caller commits before acknowledging any of them: a failure anywhere rolls back the whole
    batch, and nothing of it is applied.
    """
    results: list[CreditResult | None] = [None] * len(events)
    set_based, one_by_one = _split(events)
    await _lock_wallet_creation(conn, events)
    claimed = await _claim(conn, events, set_based)
    claimed_indexes = {item.index for item in claimed}
    one_by_one = sorted(one_by_one + [i for i in set_based if i not in claimed_indexes])
    await _create_wallets(conn, claimed)
    await _lock_wallets(conn, [(event.user_id, event.currency) for event in events])
    for item, balance_after in zip(claimed, await _credit(conn, claimed), strict=True):
        results[item.index] = CreditResult(
            Outcome.CREDITED, item.payout_id, balance_after, own_record=True
        )
    for index in one_by_one:
        results[index] = await apply_payout(conn, events[index])
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def _split(events: Sequence[PayoutEvent]) -> tuple[list[int], list[int]]:
    """Indexes for the set-based path (new payouts, wallets created on demand, the first of their
    transaction, signature and event in the batch) and for `apply_payout`."""
    set_based: list[int] = []
    one_by_one: list[int] = []
    seen: set[tuple[str, ...]] = set()
    for index, event in enumerate(events):
        keys = {
            ("transaction", event.provider_instance, event.transaction_id),
            ("signature", event.provider_instance, event.signature),
            ("event", str(event.event_id)),
        }
        simple = event.may_record_new and event.create_account and not event.verify_order
        if simple and not keys & seen:
            set_based.append(index)
        else:
            one_by_one.append(index)
        seen |= keys
    return set_based, one_by_one


async def _lock_wallet_creation(conn: Connection, events: Sequence[PayoutEvent]) -> None:
    """The advisory lock of every wallet in the batch, in one global order. `apply_payout` takes
    the same locks for payouts that need an existing wallet; they are re-entrant, so its own
    calls return at once."""
    await conn.execute(
        LOCK_WALLETS_CREATION, [e.user_id for e in events], [e.currency for e in events]
    )


async def _claim(
    conn: Connection, events: Sequence[PayoutEvent], indexes: list[int]
) -> list[_Claimed]:
    """Insert the payouts as held; those whose transaction id or signature is already recorded
    are left out (`apply_payout` tells a duplicate from a conflict)."""
    if not indexes:
        return []
    chosen = [events[index] for index in indexes]
    rows = await conn.fetch(
        CLAIM_TRANSACTIONS,
        [e.provider_instance for e in chosen],
        [e.transaction_id for e in chosen],
        [e.event_id for e in chosen],
        [e.protocol for e in chosen],
        [e.user_id for e in chosen],
        [e.amount for e in chosen],
        [e.currency for e in chosen],
        [e.signature for e in chosen],
        [e.answer_code for e in chosen],
        [json.dumps(e.attributes) for e in chosen],
        [e.raw_request.model_dump_json() for e in chosen],
        [e.received_at for e in chosen],
        [json.dumps(list(e.items)) for e in chosen],
        [e.price for e in chosen],
        [e.order_id for e in chosen],
    )
    payout_ids = {row["event_id"]: row["payout_id"] for row in rows}
    return [
        _Claimed(index, payout_ids[events[index].event_id], events[index])
        for index in indexes
        if events[index].event_id in payout_ids
    ]


async def _create_wallets(conn: Connection, claimed: list[_Claimed]) -> None:
    wallets = sorted({item.wallet for item in claimed})
    if wallets:
        await conn.execute(CREATE_ACCOUNTS, "wallet", *_columns(wallets))


async def _lock_wallets(conn: Connection, wallets: list[Wallet]) -> None:
    """Every wallet the batch may credit, in one order, before any is updated."""
    distinct = sorted(set(wallets))
    if distinct:
        await conn.execute(LOCK_WALLETS, *_columns(distinct))


async def _credit(conn: Connection, claimed: list[_Claimed]) -> list[Decimal]:
    """Credit the claimed payouts: each wallet once by its total, the ledger one entry pair per
    payout. Returns each payout's balance right after it, as if credited in batch order."""
    if not claimed:
        return []
    totals: dict[Wallet, Decimal] = defaultdict(Decimal)
    with localcontext(EXACT):
        for item in claimed:
            totals[item.wallet] += item.event.amount
    wallets = sorted(totals)
    rows = await conn.fetch(
        CREDIT_WALLETS, *_columns(wallets), [totals[wallet] for wallet in wallets]
    )
    updated = {(row["owner"], row["currency"]): row for row in rows}
    missing = [wallet for wallet in wallets if wallet not in updated]
    if missing:
        # Created above in this transaction: only a row deleted underneath us could be missing.
        raise RuntimeError(f"wallets vanished while crediting: {missing}")

    balances: list[Decimal] = []
    with localcontext(EXACT):
        running = {wallet: updated[wallet]["balance"] - totals[wallet] for wallet in wallets}
        for item in claimed:
            running[item.wallet] += item.event.amount
            balances.append(running[item.wallet])

    await _write_ledger(conn, claimed, {w: updated[w]["account_id"] for w in wallets})
    items = [(item.payout_id, item.event.user_id, i) for item in claimed for i in item.event.items]
    if items:
        await conn.execute(GRANT_ITEMS, *map(list, zip(*items, strict=True)))
    await conn.execute(MARK_CREDITED, [item.payout_id for item in claimed], balances)
    return balances


async def _write_ledger(
    conn: Connection, claimed: list[_Claimed], wallet_accounts: dict[Wallet, int]
) -> None:
    paying = [item for item in claimed if item.event.amount]
    if not paying:
        return
    funding = sorted({(item.event.provider_instance, item.event.currency) for item in paying})
    await conn.execute(CREATE_ACCOUNTS, "funding", *_columns(funding))
    rows = await conn.fetch(FUNDING_ACCOUNT_IDS, *_columns(funding))
    funding_accounts = {(row["owner"], row["currency"]): row["account_id"] for row in rows}
    payout_ids: list[int] = []
    accounts: list[int] = []
    amounts: list[Decimal] = []
    for item in paying:
        source = funding_accounts[(item.event.provider_instance, item.event.currency)]
        payout_ids += [item.payout_id, item.payout_id]
        accounts += [wallet_accounts[item.wallet], source]
        amounts += [item.event.amount, item.event.amount.copy_negate()]  # exact, unlike -x
    await conn.execute(WRITE_LEDGER, payout_ids, accounts, amounts)


def _columns(pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [first for first, _ in pairs], [second for _, second in pairs]
