"""Many payouts in one transaction, each with the outcome it would have had alone: compared with
one transaction per payout on a second database, and checked on hot wallets, overlapping
concurrent batches and the failures a batch must isolate."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from ingress.pending_orders import register_order
from schema.orders import Order
from schema.outcomes import Outcome
from tests.books import assert_books_balance, wallet_balance
from tests.factories import payout_event
from tests.polling import wait_until
from workers import batch_crediting
from workers.accounts import create_wallet
from workers.batch_crediting import FundingAccounts, apply_batch
from workers.crediting import CreditResult, apply_payout
from workers.failures import ClaimRaced, FailureKind, failure_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from asyncpg.connection import LoggedQuery

    from schema.events import PayoutEvent
    from tests.services import Services
    from workers.database import Connection


async def batch(pool: asyncpg.Pool, events: list[PayoutEvent]) -> list[CreditResult]:
    async with pool.acquire() as conn, conn.transaction():
        return await apply_batch(conn, events, FundingAccounts())


async def lock_waiters(conn: Connection) -> int:
    """Sessions of this database waiting for a lock."""
    # Inside a transaction the statistics views would keep their first snapshot.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting


@contextmanager
def logged_queries(conn: Connection) -> Iterator[list[LoggedQuery]]:
    """The statements `conn` runs inside the block. The logger is removed however the block
    ends: the connection goes back to the pool."""
    logged: list[LoggedQuery] = []
    record = logged.append
    conn.add_query_logger(record)
    try:
        yield logged
    finally:
        conn.remove_query_logger(record)


@dataclass(frozen=True)
class Books:
    """Everything a payout can change, in a form two databases can be compared by."""

    wallets: list[tuple[str, str, Decimal]]
    funding: list[tuple[str, str]]
    payouts: list[tuple[str, str, str, str, Decimal | None, int]]
    refused: list[tuple[str, str, str]]
    ledger: list[tuple[str, str, Decimal]]
    # Each payout's own entries and grants, in the order they were written, amounts as text
    # (their scale too).
    entries: list[tuple[str, str, str, str, str, str]]
    grants: list[tuple[str, str, str, str]]
    inventory: list[tuple[str, str, int]]


async def books(conn: asyncpg.Connection) -> Books:
    async def rows(query: str) -> list[Any]:
        return [tuple(row) for row in await conn.fetch(query)]

    return Books(
        wallets=await rows(
            "SELECT owner, currency, balance FROM accounts WHERE kind = 'wallet' ORDER BY 1, 2"
        ),
        funding=await rows(
            "SELECT owner, currency FROM accounts WHERE kind = 'funding' ORDER BY 1, 2"
        ),
        payouts=await rows(
            "SELECT provider_instance, transaction_id, status, outcome, balance_after,"
            " duplicate_deliveries FROM payouts ORDER BY 1, 2"
        ),
        refused=await rows(
            "SELECT provider_instance, transaction_id, outcome FROM payout_conflicts"
            " ORDER BY 1, 2, 3"
        ),
        ledger=await rows(
            "SELECT a.kind, a.owner, sum(e.amount) FROM ledger_entries e"
            " JOIN accounts a USING (account_id) GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        entries=await rows(
            "SELECT p.provider_instance, p.transaction_id, a.kind, a.owner, a.currency,"
            " e.amount::text FROM ledger_entries e JOIN payouts p USING (payout_id)"
            " JOIN accounts a USING (account_id) ORDER BY 1, 2, e.entry_id"
        ),
        grants=await rows(
            "SELECT p.provider_instance, p.transaction_id, g.user_id, g.item_id"
            " FROM inventory_entries g JOIN payouts p USING (payout_id) ORDER BY 1, 2, g.entry_id"
        ),
        inventory=await rows(
            "SELECT user_id, item_id, count(*)::int FROM inventory_entries GROUP BY 1, 2"
            " ORDER BY 1, 2"
        ),
    )


def mixed_traffic(rng: random.Random, count: int) -> list[PayoutEvent]:
    """New payouts over a few hot and many cold wallets, exact re-sends, conflicting re-sends,
    re-sends after the account policy changed, re-sends under another signature, reused
    signatures, zero amounts, items, old requests, and users who must exist already. Some wallets
    are named both by payouts that must find them and by payouts that create them: the batch
    must keep their order, as one transaction per payout in this order does."""
    hot = ["hot-1", "hot-2", "hot-3"]
    cold = [f"cold-{n}" for n in range(30)]
    events: list[PayoutEvent] = []
    for _ in range(count):
        roll = rng.random()
        if events and roll < 0.15:  # a provider's retry: same transaction, new event id
            events.append(rng.choice(events).model_copy(update={"event_id": uuid.uuid4()}))
            continue
        if events and roll < 0.2:  # the same transaction id with another amount
            original = rng.choice(events)
            events.append(
                original.model_copy(
                    update={"event_id": uuid.uuid4(), "amount": original.amount + 1}
                )
            )
            continue
        if events and roll < 0.21:  # a retry after the account policy changed to "create"
            original = rng.choice(events)
            events.append(
                original.model_copy(update={"event_id": uuid.uuid4(), "create_account": True})
            )
            continue
        if events and roll < 0.22:  # the same transaction id under another signature
            original = rng.choice(events)
            events.append(
                original.model_copy(
                    update={"event_id": uuid.uuid4(), "signature": uuid.uuid4().hex}
                )
            )
            continue
        if events and roll < 0.25:  # another transaction carrying an earlier signature
            original = rng.choice(events)
            events.append(
                payout_event(
                    provider_instance=original.provider_instance, signature=original.signature
                )
            )
            continue
        members = roll < 0.35
        # "stranger" never gets a wallet; "newcomer" and "hot-1" get one on demand, in the batch.
        user = rng.choice(
            ["member-1", "member-2", "stranger", "stranger", "newcomer", "hot-1"]
            if members
            else [*hot * 5, *cold, "newcomer"]
        )
        events.append(
            payout_event(
                provider_instance=rng.choice(["ow", "adjoe"]),
                user_id=user,
                currency=rng.choice(["COIN", "GEM"]),
                amount=Decimal(rng.choice(["0", "1", "2.5", "10", "0.01", "999.99"])),
                items=tuple(rng.sample(["sword", "shield", "gem"], rng.randint(0, 2))),
                create_account=not members,
                may_record_new=rng.random() > 0.05,
            )
        )
    return events


@pytest.mark.parametrize("seed", range(4))
async def test_a_batch_ends_as_one_transaction_per_payout_would(
    services: Services, seed: int
) -> None:
    events = mixed_traffic(random.Random(seed), 120)
    batched_url, serial_url = await services.new_database(), await services.new_database()
    batched = await asyncpg.connect(batched_url)
    serial = await asyncpg.connect(serial_url)
    try:
        for conn in (batched, serial):
            for currency in ("COIN", "GEM"):
                await create_wallet(conn, "member-1", currency)
                await create_wallet(conn, "member-2", currency)
        # In two batches, so that the second meets payouts of the first already recorded.
        results = []
        for part in (events[: len(events) // 2], events[len(events) // 2 :]):
            async with batched.transaction():
                results += await apply_batch(batched, part, FundingAccounts())
        expected = []
        for event in events:
            async with serial.transaction():
                expected.append(await apply_payout(serial, event))
        assert [(r.outcome, r.balance_after) for r in results] == [
            (r.outcome, r.balance_after) for r in expected
        ]
        assert [r.own_record for r in results] == [r.own_record for r in expected]
        assert await books(batched) == await books(serial)
        await assert_books_balance(batched)
        outcomes = {result.outcome for result in results}
        assert {
            Outcome.CREDITED,
            Outcome.DUPLICATE,
            Outcome.CONFLICT,
            Outcome.HELD_UNKNOWN_ACCOUNT,
        } <= outcomes, "the traffic did not exercise the cases it is meant to"
    finally:
        await batched.close()
        await serial.close()


def moving_no_money(case: str, recorded: PayoutEvent) -> PayoutEvent:
    """A payout in GEM, which `recorded`'s provider instance has never paid in, that credits
    nothing: what `case` names it."""
    gem: dict[str, Any] = {"currency": "GEM", "amount": Decimal(7)}
    if case == "conflict":  # spec 001 re-sends a credited transaction in another currency
        return recorded.model_copy(update={"event_id": uuid.uuid4(), **gem})
    if case == "signature_reused":
        return payout_event(signature=recorded.signature, **gem)
    if case == "expired":
        return payout_event(may_record_new=False, **gem)
    if case == "order_not_found":
        return payout_event(verify_order=True, order_id="order-unknown", **gem)
    assert case == "held_unknown_account"
    return payout_event(user_id="nobody", create_account=False, **gem)


@pytest.mark.parametrize(
    "case",
    ["conflict", "signature_reused", "expired", "order_not_found", "held_unknown_account"],
)
async def test_a_payout_that_moves_no_money_leaves_no_funding_account(
    services: Services, case: str
) -> None:
    """Alone, a payout creates its instance's funding account in its currency only when it
    credits a wallet from it; a batch leaves the same accounts, whether the funding account it
    creates is then paid from (the second payout, from a new instance) or not."""
    recorded = payout_event(user_id="ann")
    events = [moving_no_money(case, recorded), payout_event(provider_instance="new", user_id="bob")]
    batched, serial = (
        await asyncpg.connect(await services.new_database()),
        await asyncpg.connect(await services.new_database()),
    )
    try:
        for conn in (batched, serial):
            async with conn.transaction():
                await apply_payout(conn, recorded)
        async with batched.transaction():
            results = await apply_batch(batched, events, FundingAccounts())
        expected = []
        for event in events:
            async with serial.transaction():
                expected.append(await apply_payout(serial, event))
        assert [r.outcome for r in results] == [r.outcome for r in expected]
        assert [r.outcome for r in results] == [Outcome(case), Outcome.CREDITED]
        assert await books(batched) == await books(serial)
        assert (await books(batched)).funding == [("new", "COIN"), ("ow", "COIN")]
        await assert_books_balance(batched)
    finally:
        await batched.close()
        await serial.close()


async def test_hot_wallets_get_each_payouts_balance_in_batch_order(pool: asyncpg.Pool) -> None:
    rng = random.Random(7)
    events = [
        payout_event(user_id=f"hot-{rng.randrange(3)}", amount=Decimal(rng.randint(1, 50)))
        for _ in range(200)
    ]
    results = await batch(pool, events)
    running: dict[str, Decimal] = {}
    for event, result in zip(events, results, strict=True):
        running[event.user_id] = running.get(event.user_id, Decimal(0)) + event.amount
        assert (result.outcome, result.balance_after) == (
            Outcome.CREDITED,
            running[event.user_id],
        )
    async with pool.acquire() as conn:
        for user, total in running.items():
            assert await wallet_balance(conn, user, "COIN") == total
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 400
        funding = await conn.fetchval(
            "SELECT balance FROM account_balances WHERE kind = 'funding' AND owner = 'ow'"
        )
        assert funding == -sum(running.values())
        await assert_books_balance(conn)


async def test_a_conflict_and_an_unknown_member_amid_a_batch_leave_the_others_credited(
    pool: asyncpg.Pool,
) -> None:
    first = payout_event(user_id="ann", amount=Decimal(5))
    await batch(pool, [first])
    events = [
        payout_event(user_id="bob", amount=Decimal(1)),
        first.model_copy(update={"event_id": uuid.uuid4(), "amount": Decimal(6)}),
        payout_event(user_id="nobody", amount=Decimal(3), create_account=False),
        payout_event(user_id="bob", amount=Decimal(2)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.CREDITED, Decimal(1)),
        (Outcome.CONFLICT, Decimal(5)),
        (Outcome.HELD_UNKNOWN_ACCOUNT, None),
        (Outcome.CREDITED, Decimal(3)),
    ]
    assert results[2].own_record


async def test_a_payout_that_needs_its_wallet_is_held_though_a_later_one_creates_it(
    pool: asyncpg.Pool,
) -> None:
    """Alone, in batch order, the first is held (no wallet yet) and the second creates the
    wallet: the batch must not let the second go first."""
    events = [
        payout_event(user_id="zoe", amount=Decimal(2), create_account=False),
        payout_event(provider_instance="other", user_id="zoe", amount=Decimal(3)),
        payout_event(user_id="zoe", amount=Decimal(4), create_account=False),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.HELD_UNKNOWN_ACCOUNT, None),
        (Outcome.CREDITED, Decimal(3)),
        (Outcome.CREDITED, Decimal(7)),
    ]


async def test_a_held_payout_resent_under_a_create_policy_stays_held_though_a_later_one_creates(
    pool: asyncpg.Pool,
) -> None:
    """The re-send finds its payout recorded as held: alone, in batch order, it is still held (no
    wallet yet) and the next payout creates the wallet; it must not be credited behind it."""
    held = payout_event(user_id="yan", amount=Decimal(2), create_account=False)
    await batch(pool, [held])
    events = [
        held.model_copy(update={"event_id": uuid.uuid4(), "create_account": True}),
        payout_event(user_id="yan", amount=Decimal(3)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.HELD_UNKNOWN_ACCOUNT, None),
        (Outcome.CREDITED, Decimal(3)),
    ]


async def test_a_transaction_an_order_refused_credits_its_wallet_in_batch_order(
    pool: asyncpg.Pool,
) -> None:
    """The order refuses the first payout, which takes nothing; the second, the same transaction
    to another wallet, is then credited before the third."""
    refused = payout_event(
        provider_instance="shop",
        user_id="ida",
        amount=Decimal(0),
        items=("gem",),
        price=Decimal(20),
        order_id="order-unknown",
        verify_order=True,
    )
    events = [
        refused,
        payout_event(
            provider_instance="shop",
            transaction_id=refused.transaction_id,
            user_id="jo",
            amount=Decimal(2),
        ),
        payout_event(provider_instance="shop", user_id="jo", amount=Decimal(3)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.ORDER_NOT_FOUND, None),
        (Outcome.CREDITED, Decimal(2)),
        (Outcome.CREDITED, Decimal(5)),
    ]


async def test_a_transaction_sharing_a_key_with_a_recorded_payout_credits_in_batch_order(
    pool: asyncpg.Pool,
) -> None:
    """The first reuses a recorded signature, so it takes no key; the second, its transaction id
    with a signature of its own, is then a new payout, credited before the third."""
    recorded = payout_event(user_id="xia")
    await batch(pool, [recorded])
    reusing = payout_event(user_id="pia", signature=recorded.signature)
    events = [
        reusing,
        payout_event(user_id="bo", transaction_id=reusing.transaction_id, amount=Decimal(2)),
        payout_event(user_id="bo", amount=Decimal(3)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.SIGNATURE_REUSED, None),
        (Outcome.CREDITED, Decimal(2)),
        (Outcome.CREDITED, Decimal(5)),
    ]


async def test_a_held_payout_resent_behind_a_conflict_stays_held_though_a_later_one_creates(
    pool: asyncpg.Pool,
) -> None:
    """The conflict names another user; the exact re-send behind it, under a `create` policy,
    finds its payout held and no wallet yet, as it would alone."""
    held = payout_event(user_id="uma", amount=Decimal(2), create_account=False)
    await batch(pool, [held])
    events = [
        held.model_copy(
            update={"event_id": uuid.uuid4(), "user_id": "vic", "create_account": True}
        ),
        held.model_copy(update={"event_id": uuid.uuid4(), "create_account": True}),
        payout_event(user_id="uma", amount=Decimal(3)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.CONFLICT, None),
        (Outcome.HELD_UNKNOWN_ACCOUNT, None),
        (Outcome.CREDITED, Decimal(3)),
    ]


async def test_a_held_payout_resent_under_a_reused_signature_stays_held_in_batch_order(
    pool: asyncpg.Pool,
) -> None:
    """The re-send, under a `create` policy, carries the signature of the batch's first, new
    payout: it is a transaction of its own, held and still without a wallet, as it would be
    alone; the third payout creates the wallet after it."""
    held = payout_event(user_id="uma", amount=Decimal(2), create_account=False)
    await batch(pool, [held])
    first = payout_event(user_id="vic")
    events = [
        first,
        held.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "signature": first.signature,
                "create_account": True,
            }
        ),
        payout_event(user_id="uma", amount=Decimal(3)),
    ]
    results = await batch(pool, events)
    assert [(r.outcome, r.balance_after) for r in results] == [
        (Outcome.CREDITED, first.amount),
        (Outcome.HELD_UNKNOWN_ACCOUNT, None),
        (Outcome.CREDITED, Decimal(3)),
    ]


async def test_repeated_resends_of_a_credited_payout_leave_a_hot_wallet_batched(
    pool: asyncpg.Pool,
) -> None:
    """Two re-sends of a credited payout, and a conflicting one, amid new payouts to its hot
    wallet: the re-sends move nothing, so the new payouts still take the set-based statements."""
    credited = payout_event(user_id="hot", amount=Decimal(1))
    await batch(pool, [credited])

    def resend(**changes: Any) -> PayoutEvent:
        return credited.model_copy(update={"event_id": uuid.uuid4(), **changes})

    events = [payout_event(user_id="hot", amount=Decimal(1)) for _ in range(40)]
    events[5:5] = [resend(), resend(), resend(amount=Decimal(9))]
    async with pool.acquire() as conn:
        with logged_queries(conn) as queries:
            async with conn.transaction():
                results = await apply_batch(conn, events, FundingAccounts())
    assert [r.outcome for r in results[5:8]] == [
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.CONFLICT,
    ]
    assert [r.balance_after for r in results if r.outcome is Outcome.CREDITED] == [
        Decimal(n) for n in range(2, 42)
    ]
    # The set-based statements, plus a few for each re-send: none for any new payout.
    assert len(queries) < 30, [query.query for query in queries]


def inserted(query: str, args: tuple[Any, ...]) -> str | None:
    """What a statement inserts: "payout", "funding" or "wallet" (an account), or None."""
    if re.search(r"INSERT INTO payouts\b", query):
        return "payout"
    if "INSERT INTO accounts" in query:
        return "funding" if "'funding'" in query or "funding" in args else "wallet"
    return None


async def test_every_funding_account_is_created_before_any_payout_is_recorded(
    pool: asyncpg.Pool,
) -> None:
    """Even for a payout that goes one by one: taking a payout's key and then creating a funding
    account that another batch has just created would wait for it in the opposite order."""
    async with pool.acquire() as conn:
        await create_wallet(conn, "yan", "COIN")
        with logged_queries(conn) as queries:
            async with conn.transaction():
                [result] = await apply_batch(
                    conn,
                    [
                        payout_event(
                            provider_instance="fresh-wall", user_id="yan", create_account=False
                        )
                    ],
                    FundingAccounts(),
                )
        assert result.outcome is Outcome.CREDITED
        inserts = [inserted(query.query, tuple(query.args)) for query in queries]
        assert inserts.index("funding") < inserts.index("payout"), inserts
        assert inserts.count("funding") == 1, "the payout pays from the id the batch has"
        await assert_books_balance(conn)


async def test_duplicates_inside_one_batch_and_across_batches_credit_once(
    pool: asyncpg.Pool,
) -> None:
    event = payout_event(user_id="cara", amount=Decimal(4))
    resend = event.model_copy(update={"event_id": uuid.uuid4()})
    inside = await batch(pool, [event, resend, event])
    across = await batch(pool, [resend, payout_event(user_id="cara", amount=Decimal(1))])
    assert [r.outcome for r in inside] == [Outcome.CREDITED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert [r.balance_after for r in inside] == [Decimal(4)] * 3
    assert [(r.outcome, r.balance_after) for r in across] == [
        (Outcome.DUPLICATE, Decimal(4)),
        (Outcome.CREDITED, Decimal(5)),
    ]
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "cara", "COIN") == Decimal(5)
        assert await conn.fetchval("SELECT duplicate_deliveries FROM payouts WHERE amount = 4") == 3


async def test_orders_are_matched_and_consumed_inside_a_batch(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await register_order(
            conn, Order("shop", "order-1", "dora", items=("gem",), amount=Decimal(20))
        )
    ordered = {
        "provider_instance": "shop",
        "user_id": "dora",
        "amount": Decimal(0),
        "items": ("gem",),
        "price": Decimal(20),
        "verify_order": True,
    }
    events = [
        payout_event(order_id="order-1", **ordered),
        payout_event(user_id="eve", amount=Decimal(2)),
        payout_event(order_id="order-1", **ordered),  # another transaction, the same order
        payout_event(order_id="order-unknown", **ordered),
    ]
    results = await batch(pool, events)
    assert [r.outcome for r in results] == [
        Outcome.CREDITED,
        Outcome.CREDITED,
        Outcome.ORDER_NOT_FOUND,
        Outcome.ORDER_NOT_FOUND,
    ]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM inventory_entries") == 1


async def test_overlapping_batches_in_parallel_never_deadlock(pool: asyncpg.Pool) -> None:
    """Eight batches at once over the same five wallets, each listing them in its own order."""
    users = [f"shared-{n}" for n in range(5)]
    batches = []
    for index in range(8):
        order = users[index % 5 :] + users[: index % 5]
        if index % 2:
            order.reverse()
        batches.append([payout_event(user_id=u, amount=Decimal(1)) for u in order * 10])
    outcomes = await asyncio.gather(*(batch(pool, events) for events in batches))
    assert all(r.outcome is Outcome.CREDITED for results in outcomes for r in results)
    async with pool.acquire() as conn:
        for user in users:
            assert await wallet_balance(conn, user, "COIN") == Decimal(80)
        await assert_books_balance(conn)


async def test_a_failing_batch_applies_nothing(pool: asyncpg.Pool) -> None:
    good = payout_event(user_id="finn", amount=Decimal(3))
    bad = payout_event(user_id="gus\x00", amount=Decimal(1))  # Postgres text refuses NUL
    with pytest.raises(asyncpg.exceptions.DataError):
        await batch(pool, [good, bad])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payouts") == 0
        assert await conn.fetchval("SELECT count(*) FROM accounts") == 0


async def test_a_funding_account_created_by_a_rolled_back_batch_is_not_remembered(
    pool: asyncpg.Pool,
) -> None:
    """A worker remembers funding account ids across batches. One created by a batch that then
    rolled back never existed: the next batch must create it again, not write its ledger
    against a missing account."""
    funding = FundingAccounts()
    async with pool.acquire() as conn:
        rolled_back = conn.transaction()
        await rolled_back.start()
        await apply_batch(conn, [payout_event(provider_instance="new-wall")], funding)
        await rolled_back.rollback()
        async with conn.transaction():
            [result] = await apply_batch(
                conn, [payout_event(provider_instance="new-wall")], funding
            )
        assert result.outcome is Outcome.CREDITED
        await assert_books_balance(conn)


async def test_a_batch_of_new_payouts_to_existing_wallets_runs_three_statements(
    pool: asyncpg.Pool,
) -> None:
    """Set-based whatever its size: lock the wallets' creation; look for the payouts' keys and
    lock the wallets; record and credit. A worker looks the funding account up in its first
    batch only."""
    users = [f"user-{n}" for n in range(50)]
    async with pool.acquire() as conn:
        async with conn.transaction():  # the wallets and the funding account, by another worker
            await apply_batch(conn, [payout_event(user_id=u) for u in users], FundingAccounts())
        funding = FundingAccounts()
        statements = []
        with logged_queries(conn) as queries:
            for size in (1, 50, 1):
                queries.clear()
                async with conn.transaction():
                    results = await apply_batch(
                        conn, [payout_event(user_id=user) for user in users[:size]], funding
                    )
                assert {r.outcome for r in results} == {Outcome.CREDITED}
                statements.append(len([q for q in queries if q.query not in ("BEGIN;", "COMMIT;")]))
        assert statements == [4, 3, 3]
        await assert_books_balance(conn)


async def test_batches_creating_the_same_new_wallets_in_opposite_orders_never_deadlock(
    pool: asyncpg.Pool,
) -> None:
    """Two batches of order-bound payouts (applied one by one) for the same two new users, in
    opposite orders. A third transaction holds each batch's second order until both batches are
    under way: without one lock order covering wallets that do not exist yet, each batch would
    then wait for the wallet the other had just inserted."""
    plan = {"a": ("uma", "vic"), "b": ("vic", "uma")}
    async with pool.acquire() as conn:
        for name, users in plan.items():
            for position, user in enumerate(users):
                order = Order("shop", f"{name}{position}", user, items=("gem",), amount=Decimal(9))
                await register_order(conn, order)
    batches = [
        [
            payout_event(
                provider_instance="shop",
                user_id=user,
                amount=Decimal(0),
                items=("gem",),
                price=Decimal(9),
                verify_order=True,
                order_id=f"{name}{position}",
            )
            for position, user in enumerate(users)
        ]
        for name, users in plan.items()
    ]
    async with pool.acquire() as holder:
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM pending_orders WHERE order_id IN ('a1', 'b1') FOR UPDATE"
            )
            running = [asyncio.ensure_future(batch(pool, events)) for events in batches]

            async def both_waiting() -> bool:
                return await lock_waiters(holder) == 2

            await wait_until(both_waiting, "both batches waiting on a lock")
        outcomes = await asyncio.gather(*running)
    assert [r.outcome for results in outcomes for r in results] == [Outcome.CREDITED] * 4
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM inventory_entries") == 4
        await assert_books_balance(conn)


async def test_sums_past_28_digits_stay_exact(pool: asyncpg.Pool) -> None:
    """Python's default decimal context rounds at 28 significant digits; NUMERIC does not."""
    large, tiny = Decimal("123456789012345678901.12345678"), Decimal("0.00000001")
    events = [payout_event(user_id="wes", amount=amount) for amount in (large, tiny)]
    results = await batch(pool, events)
    exact = Decimal("123456789012345678901.12345679")  # 29 significant digits
    assert [r.balance_after for r in results] == [large, exact]
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "wes", "COIN") == exact
        await assert_books_balance(conn)


async def test_a_transaction_id_taken_meanwhile_by_another_wallet_rolls_the_batch_back(
    pool: asyncpg.Pool,
) -> None:
    """Batches for different wallets do not wait for each other's wallet locks, so a transaction
    id can be recorded by one after the other looked it up. The later batch must not credit its
    payouts with balances that counted the lost one: it rolls back whole, as a transient failure,
    and its retry treats that payout as the conflict it is."""
    first = payout_event(user_id="ann", transaction_id="tx-race")
    rival = payout_event(user_id="bob", transaction_id="tx-race")
    bystander = payout_event(user_id="cid", amount=Decimal(4))
    async with pool.acquire() as holder:
        async with holder.transaction():
            await apply_batch(holder, [first], FundingAccounts())
            racing = asyncio.ensure_future(batch(pool, [rival, bystander]))

            async def rival_waiting() -> bool:
                return await lock_waiters(holder) == 1

            await wait_until(rival_waiting, "the rival batch waiting for the key")
        with pytest.raises(ClaimRaced) as raised:
            await racing
    assert failure_of(raised.value).kind is FailureKind.TRANSIENT
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "cid", "COIN") is None
    retried = await batch(pool, [rival, bystander])
    assert [r.outcome for r in retried] == [Outcome.CONFLICT, Outcome.CREDITED]
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "cid", "COIN") == Decimal(4)
        assert await wallet_balance(conn, "bob", "COIN") is None
        await assert_books_balance(conn)


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_batch_look_ups_probe_the_indexes_instead_of_scanning(
    pool: asyncpg.Pool, plan_cache_mode: str
) -> None:
    """A batch's look-ups cost the same with 4,000 wallets as with 4: on young tables without
    statistics, as here, plain joins had the planner hash every wallet and every payout."""
    await batch(pool, [payout_event(user_id=f"user-{n}", amount=Decimal(1)) for n in range(4000)])
    async with pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")

        def array(values: list[str]) -> str:
            return "'{" + ",".join(values) + "}'"

        users = [f"user-{n}" for n in range(0, 4000, 40)]
        instances, currencies = array(["ow"] * len(users)), array(["COIN"] * len(users))
        # Each look-up's parameter types, and the arguments it is planned for.
        look_ups = {
            "RECORDED_AND_LOCKED": (
                ("text[]", "text[]", "text[]", "text[]", "text[]"),
                f"{instances}, {array(users)}, {array(users)}, {array(users)}, {currencies}",
            ),
            "FIND_ACCOUNTS": (("text", "text[]", "text[]"), "'funding', '{ow}', '{COIN}'"),
        }
        for name, (types, arguments) in look_ups.items():
            await conn.execute(
                f"PREPARE look_up({', '.join(types)}) AS {getattr(batch_crediting, name)}"
            )
            async with conn.transaction():
                plan = "\n".join(
                    row[0]
                    for row in await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE look_up({arguments})")
                )
            await conn.execute("DEALLOCATE look_up")
            for scan in ("Seq Scan", "Bitmap Heap Scan", "Hash"):
                assert scan not in plan, f"{name} under {plan_cache_mode}:\n{plan}"
