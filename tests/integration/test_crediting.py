"""The crediting transaction against a real Postgres: once per transaction id, books balanced."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from ingress.pending_orders import register_order
from schema.orders import Order
from schema.outcomes import Outcome
from tests.books import assert_books_balance, wallet_balance
from tests.factories import payout_event
from workers.accounts import create_wallet
from workers.crediting import CreditResult, apply_payout

if TYPE_CHECKING:
    import asyncpg

    from schema.events import PayoutEvent


def payout(**overrides: Any) -> PayoutEvent:
    return payout_event(**overrides)


def redelivered(event: PayoutEvent, **changes: Any) -> PayoutEvent:
    """The same transaction arriving again: a provider retry has a new event id."""
    return event.model_copy(update={"event_id": uuid.uuid4(), **changes})


async def apply(pool: asyncpg.Pool, event: PayoutEvent) -> CreditResult:
    async with pool.acquire() as conn, conn.transaction():
        return await apply_payout(conn, event)


async def test_new_payout_credits_the_wallet_and_writes_both_ledger_sides(
    pool: asyncpg.Pool,
) -> None:
    event = payout()
    result = await apply(pool, event)
    assert result.outcome is Outcome.CREDITED
    assert result.balance_after == Decimal("10.5")
    async with pool.acquire() as conn:
        entries = await conn.fetch(
            "SELECT a.kind, a.owner, e.amount FROM ledger_entries e"
            " JOIN accounts a USING (account_id) ORDER BY e.amount"
        )
        assert [tuple(row) for row in entries] == [
            ("funding", "ow", Decimal("-10.5")),
            ("wallet", "alice", Decimal("10.5")),
        ]
        row = await conn.fetchrow("SELECT status, outcome, answer_code, balance_after FROM payouts")
        assert row is not None
        assert tuple(row) == ("credited", "credited", "200", Decimal("10.5"))
        await assert_books_balance(conn)


async def test_retry_and_redelivery_are_duplicates_that_change_nothing(pool: asyncpg.Pool) -> None:
    event = payout()
    await apply(pool, event)
    assert (await apply(pool, redelivered(event))).outcome is Outcome.DUPLICATE
    assert (await apply(pool, event)).outcome is Outcome.DUPLICATE
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "alice", "COIN") == Decimal("10.5")
        assert await conn.fetchval("SELECT duplicate_deliveries FROM payouts") == 2
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2


async def test_duplicate_compares_amounts_as_numbers(pool: asyncpg.Pool) -> None:
    event = payout(amount=Decimal(10))
    await apply(pool, event)
    assert (
        await apply(pool, redelivered(event, amount=Decimal("10.00")))
    ).outcome is Outcome.DUPLICATE


@pytest.mark.parametrize(
    "change",
    [{"amount": Decimal("99")}, {"user_id": "mallory"}, {"currency": "GEM"}],
    ids=["amount", "user", "currency"],
)
async def test_same_transaction_with_other_fields_is_a_conflict_never_credited(
    pool: asyncpg.Pool, change: dict[str, Any]
) -> None:
    event = payout()
    await apply(pool, event)
    result = await apply(pool, redelivered(event, signature=uuid.uuid4().hex, **change))
    assert result.outcome is Outcome.CONFLICT
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM payout_conflicts WHERE outcome = 'conflict'")
            == 1
        )
        assert await conn.fetchval(
            "SELECT sum(balance) FROM accounts WHERE kind = 'wallet'"
        ) == Decimal("10.5")
        await assert_books_balance(conn)


async def test_conflict_recorded_once_even_when_redelivered(pool: asyncpg.Pool) -> None:
    event = payout()
    await apply(pool, event)
    conflicting = redelivered(event, amount=Decimal(1))
    await apply(pool, conflicting)
    assert (await apply(pool, conflicting)).outcome is Outcome.CONFLICT
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payout_conflicts") == 1


async def test_retry_with_a_new_signature_and_the_same_fields_is_a_duplicate(
    pool: asyncpg.Pool,
) -> None:
    """Offerwalls re-sign a retry when send_time changes: same transaction, same payout."""
    event = payout()
    await apply(pool, event)
    retry = redelivered(event, signature=uuid.uuid4().hex)
    assert (await apply(pool, retry)).outcome is Outcome.DUPLICATE


async def test_amount_shifted_into_a_neighbour_field_is_a_conflict(pool: asyncpg.Pool) -> None:
    """amount=1&android_id=23 and amount=12&android_id=3 carry one sign: the second is refused."""
    original = payout(amount=Decimal(1), attributes={"android_id": "23"})
    shifted = redelivered(original, amount=Decimal(12), attributes={"android_id": "3"})
    await apply(pool, original)
    assert (await apply(pool, shifted)).outcome is Outcome.CONFLICT
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "alice", "COIN") == Decimal(1)


async def test_signature_reused_by_another_transaction_is_refused(pool: asyncpg.Pool) -> None:
    """A boundary shift between trans_id and user_id makes a new transaction with an old sign."""
    original = payout(transaction_id="tx-123", user_id="u9")
    shifted = payout(transaction_id="tx-12", user_id="3u9", signature=original.signature)
    await apply(pool, original)
    assert (await apply(pool, shifted)).outcome is Outcome.SIGNATURE_REUSED
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "3u9", "COIN") is None
        assert await conn.fetchval("SELECT outcome FROM payout_conflicts") == "signature_reused"


async def test_unknown_wallet_under_require_existing_is_held_then_credited_on_creation(
    pool: asyncpg.Pool,
) -> None:
    first, second = payout(create_account=False), payout(create_account=False, amount=Decimal(2))
    assert (await apply(pool, first)).outcome is Outcome.HELD_UNKNOWN_ACCOUNT
    assert (await apply(pool, second)).outcome is Outcome.HELD_UNKNOWN_ACCOUNT
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "alice", "COIN") is None
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0
        created, credited = await create_wallet(conn, "alice", "COIN")
        assert created
        assert [p.amount for p in credited] == [Decimal("10.5"), Decimal(2)]
        assert await wallet_balance(conn, "alice", "COIN") == Decimal("12.5")
        again_created, again_credited = await create_wallet(conn, "alice", "COIN")
        assert (again_created, again_credited) == (False, [])
    assert (await apply(pool, redelivered(first))).outcome is Outcome.DUPLICATE
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "alice", "COIN") == Decimal("12.5")
        await assert_books_balance(conn)


async def test_held_payout_is_credited_by_a_later_delivery_once_the_wallet_exists(
    pool: asyncpg.Pool,
) -> None:
    event = payout(create_account=False, user_id="bob")
    await apply(pool, event)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'bob', 'COIN')"
        )
    assert (await apply(pool, redelivered(event))).outcome is Outcome.CREDITED
    assert (await apply(pool, redelivered(event))).outcome is Outcome.DUPLICATE
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "bob", "COIN") == Decimal("10.5")


async def test_operator_creating_a_wallet_while_a_payout_is_held_never_strands_it(
    pool: asyncpg.Pool,
) -> None:
    """Each round races a require_existing payout with `account create` for the same wallet."""
    for round_number in range(40):
        user = f"racer-{round_number}"
        event = payout(create_account=False, user_id=user, amount=Decimal(3))

        async def operator_creates(user: str = user) -> None:
            async with pool.acquire() as conn:
                await create_wallet(conn, user, "COIN")

        await asyncio.gather(apply(pool, event), operator_creates())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payouts WHERE status = 'held'") == 0
        balances = await conn.fetch("SELECT balance FROM accounts WHERE kind = 'wallet'")
        assert [row["balance"] for row in balances] == [Decimal(3)] * 40
        await assert_books_balance(conn)


async def test_require_existing_credits_an_existing_wallet(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_wallet(conn, "carol", "COIN")
    assert (
        await apply(pool, payout(create_account=False, user_id="carol"))
    ).outcome is Outcome.CREDITED


async def test_rolled_back_transaction_leaves_nothing_behind(pool: asyncpg.Pool) -> None:
    """What a crash between the credit and the commit does: nothing, so redelivery credits."""
    event = payout()

    async def crash_before_commit() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await apply_payout(conn, event)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash_before_commit()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payouts") == 0
        assert await conn.fetchval("SELECT count(*) FROM accounts") == 0
    assert (await apply(pool, event)).outcome is Outcome.CREDITED


async def test_concurrent_deliveries_of_one_transaction_credit_once(pool: asyncpg.Pool) -> None:
    event = payout()
    results = await asyncio.gather(*(apply(pool, redelivered(event)) for _ in range(40)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.CREDITED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 39
    async with pool.acquire() as conn:
        assert await wallet_balance(conn, "alice", "COIN") == Decimal("10.5")
        await assert_books_balance(conn)


async def test_concurrent_payouts_to_hot_wallets_are_exact_and_never_deadlock(
    pool: asyncpg.Pool,
) -> None:
    users = ["hot-1", "hot-2", "hot-3"]
    events = [
        payout(user_id=users[i % 3], amount=Decimal(i) / 100 + 1, provider_instance=f"p{i % 2}")
        for i in range(300)
    ]
    results = await asyncio.gather(*(apply(pool, e) for e in events))
    assert {r.outcome for r in results} == {Outcome.CREDITED}
    async with pool.acquire() as conn:
        for user in users:
            expected = sum((e.amount for e in events if e.user_id == user), Decimal(0))
            assert await wallet_balance(conn, user, "COIN") == expected
        funding = await conn.fetch(
            "SELECT owner, balance FROM account_balances WHERE kind = 'funding' ORDER BY owner"
        )
        for row in funding:
            spent = sum(
                (e.amount for e in events if e.provider_instance == row["owner"]), Decimal(0)
            )
            assert row["balance"] == -spent
        await assert_books_balance(conn)


async def register(pool: asyncpg.Pool, order: Order) -> None:
    async with pool.acquire() as conn:
        await register_order(conn, order)


def purchase(**overrides: Any) -> PayoutEvent:
    values: dict[str, Any] = {
        "provider_instance": "billing",
        "amount": Decimal(0),
        "items": ("sword",),
        "price": Decimal(300),
        "order_id": "APP-1",
        "verify_order": True,
    }
    return payout(**{**values, **overrides})


async def test_a_held_item_purchase_grants_its_items_when_the_wallet_is_created(
    pool: asyncpg.Pool,
) -> None:
    event = purchase(user_id="late", create_account=False, verify_order=False)
    assert (await apply(pool, event)).outcome is Outcome.HELD_UNKNOWN_ACCOUNT
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM inventory_entries") == 0
        _, credited = await create_wallet(conn, "late", "COIN")
        assert [payout.items for payout in credited] == [("sword",)]
        assert await conn.fetchval("SELECT quantity FROM inventories WHERE user_id = 'late'") == 1
        assert await wallet_balance(conn, "late", "COIN") == 0
        await assert_books_balance(conn)


async def test_a_zero_amount_payout_writes_no_ledger_entries(pool: asyncpg.Pool) -> None:
    result = await apply(pool, payout(amount=Decimal(0)))
    assert (result.outcome, result.balance_after) == (Outcome.CREDITED, Decimal(0))
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0


async def test_two_transactions_racing_for_one_order_consume_it_once(pool: asyncpg.Pool) -> None:
    await register(pool, Order("billing", "APP-1", "alice", ("sword",), Decimal(300)))
    results = await asyncio.gather(*(apply(pool, purchase()) for _ in range(6)))
    outcomes = sorted(result.outcome.value for result in results)
    assert outcomes == ["credited"] + ["order_not_found"] * 5
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payouts") == 1
        assert await conn.fetchval("SELECT count(*) FROM payout_conflicts") == 5
        assert await conn.fetchval("SELECT sum(quantity) FROM inventory_entries") == 1


async def test_a_stale_request_settles_only_a_recorded_transaction(pool: asyncpg.Pool) -> None:
    event = payout()
    assert (await apply(pool, redelivered(event, may_record_new=False))).outcome is Outcome.EXPIRED
    assert (await apply(pool, event)).outcome is Outcome.CREDITED
    late = await apply(pool, redelivered(event, may_record_new=False))
    assert (late.outcome, late.balance_after) == (Outcome.DUPLICATE, Decimal("10.5"))


async def test_a_held_payout_belongs_to_its_first_delivery_only(pool: asyncpg.Pool) -> None:
    event = payout(user_id="nobody", create_account=False)
    assert (await apply(pool, event)).own_record
    again = await apply(pool, redelivered(event))
    assert (again.outcome, again.own_record) == (Outcome.HELD_UNKNOWN_ACCOUNT, False)
    assert (await apply(pool, event)).own_record  # a replay of the first delivery
