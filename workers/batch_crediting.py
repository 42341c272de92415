"""Apply many payout events in one Postgres transaction, each with the outcome it would have had
alone.

New payouts to wallets that may be created take the set-based path, a fixed number of statements
whatever the batch size; everything else goes through `apply_payout` afterwards, in the same
transaction. Locks are taken in one order in every batch, so workers crediting the same wallets
queue instead of deadlocking. Why each rule holds: docs/architecture.md#batches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import MAX_PREC, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any

from schema.outcomes import Outcome
from workers.crediting import CreditResult, apply_payout
from workers.failures import ClaimRaced
from workers.payout_rows import PayoutRow

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from schema.events import PayoutEvent
    from workers.database import Connection

__all__ = ["FundingAccounts", "apply_batch"]

# The advisory locks of crediting.LOCK_WALLET_CREATION, for many wallets in one statement: the
# aggregate takes them one by one in the sorted subquery's order.
LOCK_WALLETS_CREATION = """
SELECT count(pg_advisory_xact_lock(k.owner_key, k.currency_key))
FROM (SELECT DISTINCT hashtext(t.owner) AS owner_key, hashtext(t.currency) AS currency_key
      FROM unnest($1::text[], $2::text[]) AS t(owner, currency)
      ORDER BY 1, 2) AS k
"""

# In one statement, after the wallets' creation locks: which of the payouts ($1-$3) are recorded
# already, by transaction id or by signature, as their positions (1-based) in the arrays, with
# the status of their transaction (NULL when only their signature is recorded); and the wallets
# ($4, $5) that exist, locked in the order of the arrays (the subquery runs once per element,
# top to bottom), with their balances. The LIMITs keep the payout look-ups per-row probes of the
# unique keys: as a plain EXISTS the planner may hash the whole table, and with the status in
# the WHERE clause it chose the partial index of held payouts, reading every held payout.
RECORDED_AND_LOCKED = """
WITH recorded AS (
    SELECT t.position, t.provider_instance, t.transaction_id
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
         AS t(provider_instance, transaction_id, signature, position)
    CROSS JOIN LATERAL (
        (SELECT FROM payouts p
         WHERE p.provider_instance = t.provider_instance AND p.transaction_id = t.transaction_id)
        UNION ALL
        (SELECT FROM payouts p
         WHERE p.provider_instance = t.provider_instance AND p.signature = t.signature)
        LIMIT 1
    ) AS found
), locked AS (
    SELECT a.account_id, w.owner, w.currency, a.balance
    FROM unnest($4::text[], $5::text[]) AS w(owner, currency)
    CROSS JOIN LATERAL (
        SELECT account_id, balance FROM accounts
        WHERE kind = 'wallet' AND owner = w.owner AND currency = w.currency
        FOR UPDATE
    ) AS a
)
SELECT r.position,
       (SELECT p.status FROM payouts p
        WHERE p.provider_instance = r.provider_instance AND p.transaction_id = r.transaction_id
        LIMIT 1) AS status,
       NULL::bigint AS account_id, NULL::text AS owner, NULL::text AS currency,
       NULL::numeric AS balance
FROM recorded r
UNION ALL
SELECT NULL, NULL, account_id, owner, currency, balance FROM locked
"""

# The fresh payouts, recorded as credited, in one statement with everything they change: each
# payout's `PayoutRow` as arrays ($1-$16) and its balance after ($17), each wallet credited once
# by its total ($18, $19), the ledger ($20-$22: the funding account pays the wallet) and the
# items granted ($23-$25), the last two matched to their payouts by event id. A payout whose key
# another transaction took meanwhile is not returned; the caller then rolls the whole statement
# back. Constraints are checked at the end of the statement, when every payout the ledger and
# the items refer to is in.
RECORD_CREDITED = """
WITH recorded AS (
    INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                         currency, signature, create_account, status, outcome, answer_code,
                         attributes, raw_request, received_at, items, price, order_id,
                         balance_after, credited_at)
    SELECT t.provider_instance, t.transaction_id, t.event_id, t.protocol, t.user_id, t.amount,
           t.currency, t.signature, t.create_account, 'credited', 'credited', t.answer_code,
           t.attributes::jsonb, t.raw_request::jsonb, t.received_at, t.items::jsonb, t.price,
           t.order_id, t.balance_after, now()
    FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::numeric[],
                $7::text[], $8::text[], $9::boolean[], $10::text[], $11::text[], $12::text[],
                $13::timestamptz[], $14::text[], $15::numeric[], $16::text[], $17::numeric[])
         AS t(provider_instance, transaction_id, event_id, protocol, user_id, amount, currency,
              signature, create_account, answer_code, attributes, raw_request, received_at,
              items, price, order_id, balance_after)
    ORDER BY t.provider_instance, t.transaction_id
    ON CONFLICT DO NOTHING
    RETURNING payout_id, event_id
), credited_wallets AS (
    UPDATE accounts a SET balance = a.balance + t.total
    FROM unnest($18::bigint[], $19::numeric[]) AS t(account_id, total)
    WHERE a.account_id = t.account_id
), ledger AS (
    INSERT INTO ledger_entries (payout_id, account_id, amount)
    SELECT r.payout_id, e.account_id, e.amount
    FROM unnest($20::uuid[], $21::bigint[], $22::numeric[]) WITH ORDINALITY
         AS e(event_id, account_id, amount, position)
    JOIN recorded r USING (event_id)
    ORDER BY e.position
), granted AS (
    INSERT INTO inventory_entries (payout_id, user_id, item_id, quantity)
    SELECT r.payout_id, g.user_id, g.item_id, 1
    FROM unnest($23::uuid[], $24::text[], $25::text[]) WITH ORDINALITY
         AS g(event_id, user_id, item_id, position)
    JOIN recorded r USING (event_id)
    ORDER BY g.position
)
SELECT payout_id, event_id FROM recorded
"""

# Wallets and funding accounts alike ($1 is the kind), each created once whoever asks first;
# returns those this statement created.
CREATE_ACCOUNTS = """
INSERT INTO accounts (kind, owner, currency)
SELECT $1, t.owner, t.currency FROM unnest($2::text[], $3::text[]) AS t(owner, currency)
ORDER BY t.owner, t.currency
ON CONFLICT (kind, owner, currency) DO NOTHING
RETURNING account_id, owner, currency
"""

# Funding accounts this transaction created and paid nothing from: no other transaction has seen
# them. A ledger entry on one would fail the foreign key rather than lose the entry.
DELETE_ACCOUNTS = """
DELETE FROM accounts WHERE account_id = ANY($1::bigint[])
"""

# LIMIT 1 (the key is unique anyway) keeps the planner from flattening the subquery into a join.
FIND_ACCOUNTS = """
SELECT a.account_id, t.owner, t.currency
FROM unnest($2::text[], $3::text[]) AS t(owner, currency)
CROSS JOIN LATERAL (
    SELECT account_id FROM accounts WHERE kind = $1 AND owner = t.owner AND currency = t.currency
    LIMIT 1
) AS a
"""

Wallet = tuple[str, str]  # (user id, currency)
FundingKey = tuple[str, str]  # (provider instance, currency)

# Sums as exact as Postgres's NUMERIC: the default context would round past 28 digits, and a
# result that still had to be rounded raises instead of crediting a rounded amount.
EXACT = Context(prec=MAX_PREC, traps=[Inexact, InvalidOperation])


@dataclass(frozen=True)
class _Fresh:
    index: int  # the event's position in the batch
    event: PayoutEvent
    balance_after: Decimal

    @property
    def wallet(self) -> Wallet:
        return _wallet(self.event)


@dataclass(frozen=True)
class _Account:
    account_id: int
    balance: Decimal


class FundingAccounts:
    """The ids of the funding accounts seen committed, by (provider instance, currency).

    Committed accounts are never deleted, so a worker process looks each one up once, not in
    every batch. An id is kept only when found before the transaction created any funding
    account: a committed row, not one a rollback (or `apply_batch`) could take away. A failover
    to a replica that had not received the commit can still take one away; the worker forgets
    them all when a batch fails.
    """

    def __init__(self) -> None:
        self._committed: dict[FundingKey, int] = {}

    def forget(self) -> None:
        """Look every account up again from the next batch on."""
        self._committed.clear()

    async def ids(
        self, conn: Connection, accounts: set[FundingKey]
    ) -> tuple[dict[FundingKey, int], dict[FundingKey, int]]:
        """The id of each of `accounts`, created in the caller's transaction when missing; and
        the ids of those this call created."""
        ids = {key: self._committed[key] for key in accounts if key in self._committed}
        created: dict[FundingKey, int] = {}
        if unknown := accounts - ids.keys():
            found = await _find_accounts(conn, "funding", unknown)
            self._committed.update(found)
            ids |= found
            if missing := unknown - found.keys():
                created = await _create_accounts(conn, "funding", missing)
                ids |= created
                if raced := missing - created.keys():  # committed meanwhile by another worker
                    ids |= await _find_accounts(conn, "funding", raced)
        return ids, created


async def apply_batch(
    conn: Connection, events: Sequence[PayoutEvent], funding: FundingAccounts
) -> list[CreditResult]:
    """Record and credit every event, in the caller's transaction; results in `events`' order.

    The caller commits before acknowledging any of them: a failure anywhere rolls back the whole
    batch, and nothing of it is applied. Raises `ClaimRaced` when a concurrent transaction took
    one of the batch's keys first. `funding` must only have been used in committed transactions
    or in this one, before this call.
    """
    results: list[CreditResult | None] = [None] * len(events)
    set_based, one_by_one = _split(events)
    await _lock_wallet_creation(conn, events)
    recorded, wallets = await _recorded_and_locked(
        conn, events, set_based, {_wallet(event) for event in events}
    )
    fresh = [index for index in set_based if index not in recorded]
    # Payouts going one by one that may credit their wallet after all, and so hold back the
    # later payouts to it, as they would alone: a re-send of a held payout (credited if its
    # wallet exists by then), and those `_split` let pass because a set-based payout takes their
    # transaction id, where it turns out that it does not (only its signature is recorded) or
    # that the transaction is held.
    held = {index for index, status in recorded.items() if status == "held"}
    unclaimed = {index for index, status in recorded.items() if status is None}
    movers = held | _sharing_a_transaction(events, one_by_one, held | unclaimed)
    behind_movers = _behind(events, fresh, movers)
    fresh = [index for index in fresh if index not in behind_movers]
    one_by_one = sorted([*one_by_one, *recorded, *behind_movers])
    if new_wallets := {_wallet(events[index]) for index in fresh} - wallets.keys():
        # Locked out of the global order, but no one else can be waiting for them: no wallet
        # is created or credited without the creation lock this batch holds for it.
        await _create_accounts(conn, "wallet", new_wallets)
        _, created = await _recorded_and_locked(conn, events, [], new_wallets)
        wallets |= created
    credited = _balances_after(events, fresh, wallets)
    # Every funding account the batch may pay from, those of its one-by-one payouts included,
    # so that `apply_payout` never creates one after recording a payout: all are created here,
    # in one sorted statement, before any payout's key is taken. Whether a one-by-one payout
    # pays is known only once it has run: those created for none are deleted at the end.
    funding_ids, created_funding = await funding.ids(
        conn, {_funding(event) for event in events if event.amount}
    )
    payout_ids = await _record_credited(conn, credited, wallets, funding_ids)
    for item in credited:
        results[item.index] = CreditResult(
            Outcome.CREDITED, payout_ids[item.index], item.balance_after, own_record=True
        )
    for index in one_by_one:
        results[index] = await apply_payout(conn, events[index], funding_ids)
    assert all(result is not None for result in results)
    done = [result for result in results if result is not None]
    await _delete_unpaid_funding(conn, events, done, created_funding)
    return done


async def _delete_unpaid_funding(
    conn: Connection,
    events: Sequence[PayoutEvent],
    results: list[CreditResult],
    created: dict[FundingKey, int],
) -> None:
    """Delete the funding accounts this batch created that none of its payouts paid from (a
    conflict, a reused signature, an expired request, a refused order, a held payout): one
    transaction per payout would not have created them."""
    if not created:
        return  # the common case: every funding account existed already
    paid = {
        _funding(event)
        for event, result in zip(events, results, strict=True)
        if event.amount and result.outcome is Outcome.CREDITED
    }
    if unpaid := sorted(account_id for key, account_id in created.items() if key not in paid):
        await conn.execute(DELETE_ACCOUNTS, unpaid)


def _wallet(event: PayoutEvent) -> Wallet:
    return (event.user_id, event.currency)


def _funding(event: PayoutEvent) -> FundingKey:
    return (event.provider_instance, event.currency)


def _split(events: Sequence[PayoutEvent]) -> tuple[list[int], list[int]]:
    """Indexes for the set-based path (new payouts, wallets created on demand, the first of their
    transaction, signature and event in the batch, and of their wallet's payouts up to the first
    that goes one by one and may move its balance) and for `apply_payout`.

    The set-based payouts are applied first. A payout that goes one by one and may move its
    wallet's balance therefore sends every later payout to its wallet one by one too: otherwise
    a later payout could create the wallet, or move its balance, before it. That is every payout
    that needs more (an existing wallet, a pending order, a fresh request), and every other one
    by one unless a set-based payout takes its transaction id first: a re-send or a conflict of
    a payout the batch records changes no balance, but the same transaction after one that its
    order refused is credited, and a payout that reuses only a signature may be a transaction
    of its own. (A set-based payout found recorded may take no transaction after all:
    `apply_batch` then holds back the wallets of those that shared its transaction id.)
    """
    set_based: list[int] = []
    one_by_one: list[int] = []
    # What earlier payouts took, one set per kind of key: no key tuples built per payout.
    transactions: set[tuple[str, str]] = set()
    signatures: set[tuple[str, str]] = set()
    event_ids: set[UUID] = set()
    wallets: set[Wallet] = set()
    set_based_transactions: set[tuple[str, str]] = set()
    for index, event in enumerate(events):
        wallet = (event.user_id, event.currency)
        transaction = (event.provider_instance, event.transaction_id)
        signature = (event.provider_instance, event.signature)
        simple = event.may_record_new and event.create_account and not event.verify_order
        if (
            simple
            and transaction not in transactions
            and signature not in signatures
            and event.event_id not in event_ids
            and wallet not in wallets
        ):
            set_based.append(index)
            set_based_transactions.add(transaction)
        else:
            one_by_one.append(index)
            if not simple or transaction not in set_based_transactions:
                wallets.add(wallet)
        transactions.add(transaction)
        signatures.add(signature)
        event_ids.add(event.event_id)
    return set_based, one_by_one


def _transaction(event: PayoutEvent) -> tuple[str, ...]:
    return ("transaction", event.provider_instance, event.transaction_id)


def _sharing_a_transaction(
    events: Sequence[PayoutEvent], candidates: list[int], others: set[int]
) -> set[int]:
    """Those of `candidates` with the transaction id of one of `others`."""
    transactions = {_transaction(events[index]) for index in others}
    return {index for index in candidates if _transaction(events[index]) in transactions}


def _behind(events: Sequence[PayoutEvent], fresh: list[int], movers: set[int]) -> set[int]:
    """Those of `fresh` that follow one of `movers` to the same wallet."""
    if not movers:
        return set()  # the common case: nothing to look up for every payout of the batch
    first_by_wallet: dict[Wallet, int] = {}
    for index in sorted(movers):
        first_by_wallet.setdefault(_wallet(events[index]), index)
    return {
        index for index in fresh if index > first_by_wallet.get(_wallet(events[index]), len(events))
    }


async def _lock_wallet_creation(conn: Connection, events: Sequence[PayoutEvent]) -> None:
    """The advisory lock of every wallet in the batch, in one global order. `apply_payout` takes
    the same locks for payouts that need an existing wallet; they are re-entrant, so its own
    calls return at once."""
    await conn.execute(
        LOCK_WALLETS_CREATION, [e.user_id for e in events], [e.currency for e in events]
    )


async def _recorded_and_locked(
    conn: Connection, events: Sequence[PayoutEvent], indexes: list[int], wallets: set[Wallet]
) -> tuple[dict[int, str | None], dict[Wallet, _Account]]:
    """Those of `indexes` whose transaction id or signature is recorded (`apply_payout` tells a
    re-send from a conflict), with the status of their transaction (None when only their
    signature is recorded), and those of `wallets` that exist, locked in one order before any is
    updated."""
    chosen = [events[index] for index in indexes]
    rows = await conn.fetch(
        RECORDED_AND_LOCKED,
        [e.provider_instance for e in chosen],
        [e.transaction_id for e in chosen],
        [e.signature for e in chosen],
        *_columns(sorted(wallets), 2),
    )
    recorded = {
        indexes[row["position"] - 1]: row["status"] for row in rows if row["position"] is not None
    }
    locked = {
        (row["owner"], row["currency"]): _Account(row["account_id"], row["balance"])
        for row in rows
        if row["position"] is None
    }
    return recorded, locked


async def _create_accounts(
    conn: Connection, kind: str, accounts: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Those of `accounts` this call created, with their ids."""
    if not accounts:
        return {}
    rows = await conn.fetch(CREATE_ACCOUNTS, kind, *_columns(sorted(accounts), 2))
    return {(row["owner"], row["currency"]): row["account_id"] for row in rows}


async def _find_accounts(
    conn: Connection, kind: str, accounts: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    rows = await conn.fetch(FIND_ACCOUNTS, kind, *_columns(sorted(accounts), 2))
    return {(row["owner"], row["currency"]): row["account_id"] for row in rows}


def _balances_after(
    events: Sequence[PayoutEvent], fresh: list[int], wallets: dict[Wallet, _Account]
) -> list[_Fresh]:
    """Each fresh payout's balance right after it, as if credited in batch order."""
    missing = {_wallet(events[index]) for index in fresh} - wallets.keys()
    if missing:
        # Created above in this transaction: only a row deleted underneath us could be missing.
        raise RuntimeError(f"wallets vanished while crediting: {sorted(missing)}")
    running = {wallet: account.balance for wallet, account in wallets.items()}
    credited: list[_Fresh] = []
    with localcontext(EXACT):
        for index in fresh:
            event = events[index]
            running[_wallet(event)] += event.amount
            credited.append(_Fresh(index, event, running[_wallet(event)]))
    return credited


async def _record_credited(
    conn: Connection,
    credited: list[_Fresh],
    wallets: dict[Wallet, _Account],
    funding_ids: dict[FundingKey, int],
) -> dict[int, int]:
    """Insert the payouts as credited, credit their wallets, write their ledger and grant their
    items, in one statement; their payout ids by batch index."""
    if not credited:
        return {}
    chosen = [item.event for item in credited]
    rows = await conn.fetch(
        RECORD_CREDITED,
        *_columns([PayoutRow.of(event) for event in chosen], len(PayoutRow._fields)),
        [item.balance_after for item in credited],
        *_columns(_wallet_totals(credited, wallets), 2),
        *_columns(_ledger_entries(credited, wallets, funding_ids), 3),
        *_columns([(e.event_id, e.user_id, granted) for e in chosen for granted in e.items], 3),
    )
    if len(rows) != len(credited):
        raise ClaimRaced(
            f"{len(credited) - len(rows)} of {len(credited)} payouts were recorded by another "
            "transaction meanwhile"
        )
    payout_ids = {row["event_id"]: row["payout_id"] for row in rows}
    return {item.index: payout_ids[item.event.event_id] for item in credited}


def _wallet_totals(
    credited: list[_Fresh], wallets: dict[Wallet, _Account]
) -> list[tuple[int, Decimal]]:
    """Each wallet once, by the total of its payouts, in account order."""
    totals: dict[int, Decimal] = defaultdict(Decimal)
    with localcontext(EXACT):
        for item in credited:
            totals[wallets[item.wallet].account_id] += item.event.amount
    return sorted(totals.items())


def _ledger_entries(
    credited: list[_Fresh], wallets: dict[Wallet, _Account], funding_ids: dict[FundingKey, int]
) -> list[tuple[UUID, int, Decimal]]:
    """One entry pair per paying payout, by event id: the funding account pays the wallet."""
    entries: list[tuple[UUID, int, Decimal]] = []
    for item in credited:
        event = item.event
        if event.amount:
            source = funding_ids[_funding(event)]
            entries.append((event.event_id, wallets[item.wallet].account_id, event.amount))
            entries.append((event.event_id, source, event.amount.copy_negate()))  # exact, unlike -x
    return entries


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """Rows as one tuple per column, for `unnest`: `width` of them even when there are no rows."""
    return list(zip(*rows, strict=True)) if rows else [()] * width
