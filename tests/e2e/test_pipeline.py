"""The whole path with real processes: provider HTTP call -> RabbitMQ -> worker -> Postgres."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from broker.publisher import ConfirmedPublisher
from schema.settings import BrokerSettings
from tests.books import assert_books_balance
from tests.e2e.provider import settle_like_the_platform
from tests.e2e.stack import ADJOE_TOKEN, AIGAME_KEY, OFFERWALL_KEY, RETRY_TIERS
from tests.factories import payout_event
from tests.polling import wait_until
from tests.signing import adjoe_query, aigame_payout_body, offerwall_query

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.e2e.stack import Process, Stack

DRAIN_TIMEOUT_SECONDS = 120.0
# Enough that a worker draining them fast is still killed mid-stream.
ENVELOPED = 10_000
Wallets = Counter[tuple[str, str]]


def offerwall_path(transaction_id: str, user_id: str, amount: int) -> str:
    params = {
        "user_id": user_id,
        "amount": str(amount),
        "trans_id": transaction_id,
        "send_time": "1763800000",
        "gaid": "38400000-8cf0-11bd-b23e-10b96e40000d",
    }
    return f"/callbacks/offerwall?{offerwall_query(params, OFFERWALL_KEY)}"


def adjoe_path(transaction_uuid: str, user_id: str, amount: int) -> str:
    params = {
        "user_uuid": user_id,
        "coin_amount": str(amount),
        "currency": "coins",
        "trans_uuid": transaction_uuid,
        "device_id": "device-1",
    }
    return f"/callbacks/adjoe?{adjoe_query(params, ADJOE_TOKEN)}"


def mixed_traffic(count: int, seed: int) -> tuple[list[str], Wallets]:
    """Unique signed callbacks over many users with a hot few, and the balances they must give."""
    rng = random.Random(seed)
    users = [f"user-{n}" for n in range(60)]
    hot = users[:3]
    paths, expected = [], Wallets()
    for _ in range(count):
        user = rng.choice(hot) if rng.random() < 0.4 else rng.choice(users)
        amount = rng.randint(1, 500)
        if rng.random() < 0.5:
            paths.append(offerwall_path(uuid.uuid4().hex, user, amount))
            expected[(user, "COIN")] += amount
        else:
            paths.append(adjoe_path(str(uuid.uuid4()), user, amount))
            expected[(user, "coins")] += amount
    return paths, expected


async def send_all(stack: Stack, paths: list[str], concurrency: int = 24) -> list[httpx.Response]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:

        async def send(path: str) -> httpx.Response:
            async with limit:
                return await client.get(path)

        return await asyncio.gather(*(send(path) for path in paths))


async def send_one(stack: Stack, path: str) -> int:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        return (await client.get(path)).status_code


async def processed_deliveries(stack: Stack) -> int:
    value = await stack.fetchval("SELECT coalesce(sum(1 + duplicate_deliveries), 0) FROM payouts")
    return int(value)


async def assert_wallets_exactly(
    stack: Stack, expected: Mapping[tuple[str, str], int | Decimal]
) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT owner, currency, balance FROM accounts WHERE kind = 'wallet'"
        )
        assert {(r["owner"], r["currency"]): r["balance"] for r in rows} == {
            key: Decimal(value) for key, value in expected.items()
        }
        await assert_books_balance(conn)
    finally:
        await conn.close()


async def test_signed_callback_becomes_a_credit_visible_to_the_operator(stack: Stack) -> None:
    await stack.start_ingress()
    await stack.start_worker()
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        response = await client.get(offerwall_path("tx-e2e-1", "player-1", 250))
    assert (response.status_code, response.json()) == (200, {"is_valid": True})

    def show() -> Any:
        shown = stack.run(
            "payout", "show", "--provider", "offerwall", "--transaction", "tx-e2e-1", "--json"
        )
        return json.loads(shown.stdout) if shown.returncode == 0 else None

    async def credited() -> bool:
        details = await asyncio.to_thread(show)
        return details is not None and details["payout"]["status"] == "credited"

    await wait_until(credited, "payout tx-e2e-1 credited")
    details = await asyncio.to_thread(show)
    assert details is not None
    payout = details["payout"]
    assert (payout["amount"], payout["currency"], payout["answer_code"]) == ("250", "COIN", "200")
    assert "sign=" in payout["raw_request"]["query_string"]
    assert OFFERWALL_KEY not in json.dumps(details)
    assert sorted(entry["amount"] for entry in details["ledger"]) == ["-250", "250"]
    assert details["ledger_check"] == {"sum": "0", "balanced": True, "problems": []}

    balances = json.loads(stack.run("balance", "show", "--user", "player-1", "--json").stdout)
    assert [(w["currency"], w["balance"]) for w in balances["wallets"]] == [("COIN", "250")]


async def test_hundred_concurrent_deliveries_of_one_transaction_credit_once(stack: Stack) -> None:
    await stack.start_ingress()
    await stack.start_worker()
    path = offerwall_path("tx-stampede", "player-2", 75)
    clients = [httpx.AsyncClient(base_url=stack.base_url, timeout=30) for _ in range(5)]
    try:
        responses = await asyncio.gather(*(clients[i % 5].get(path) for i in range(100)))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    assert [(r.status_code, r.json()) for r in responses] == [(200, {"is_valid": True})] * 100

    async def all_processed() -> bool:
        return await processed_deliveries(stack) == 100

    await wait_until(all_processed, "100 deliveries processed", DRAIN_TIMEOUT_SECONDS)
    await assert_wallets_exactly(stack, Wallets({("player-2", "COIN"): 75}))
    assert await stack.fetchval("SELECT count(*) FROM ledger_entries") == 2


def shifted_offerwall_paths() -> tuple[str, str, str, str]:
    """A provider's callback and three boundary-shifted copies that keep its sign
    (docs/security.md): the amount shifted into from the android_id and from the send_time, both
    refused at the edge by their formats, and the user id shifted out of the transaction id,
    which the instance leaves free."""
    base = {"send_time": "1763800000"}
    original = {
        **base,
        "user_id": "u9",
        "amount": "1",
        "trans_id": "tx-123",
        "android_id": "23a1b2c3d4e5f607",
    }
    amount_shift = {**original, "amount": "12", "android_id": "3a1b2c3d4e5f607"}
    id_shift = {**original, "trans_id": "tx-12", "user_id": "3u9"}
    without_device = {name: value for name, value in original.items() if name != "android_id"}
    paths = tuple(
        f"/callbacks/offerwall?{offerwall_query(params, OFFERWALL_KEY)}"
        for params in (original, amount_shift, id_shift)
    )
    assert len({path.rsplit("sign=", 1)[1] for path in paths}) == 1
    # Without a device id, amount sorts next to send_time.
    plain = {**without_device, "amount": "11", "send_time": "763800000"}
    time_shift = f"/callbacks/offerwall?{offerwall_query(plain, OFFERWALL_KEY)}"
    unshifted = offerwall_query(without_device, OFFERWALL_KEY)
    assert time_shift.rsplit("sign=", 1)[1] == unshifted.rsplit("sign=", 1)[1]
    return paths[0], paths[1], paths[2], time_shift


async def refusals(stack: Stack, count: int) -> str:
    """The outcomes in `payout_conflicts`, sorted, once it holds `count` rows."""

    async def all_refused() -> bool:
        return int(await stack.fetchval("SELECT count(*) FROM payout_conflicts")) == count

    await wait_until(all_refused, f"{count} shifted copies refused")
    outcomes: str = await stack.fetchval(
        "SELECT string_agg(outcome, ',' ORDER BY outcome) FROM payout_conflicts"
    )
    return outcomes


async def test_boundary_shifted_copies_of_a_credited_callback_are_refused(stack: Stack) -> None:
    """An attacker replays what they have seen: the provider's callback, already credited."""
    await stack.start_ingress()
    await stack.start_worker()
    original, amount_shift, id_shift, _ = shifted_offerwall_paths()
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        assert (await client.get(original)).status_code == 200

        async def credited() -> bool:
            count = await stack.fetchval("SELECT count(*) FROM payouts WHERE status = 'credited'")
            return int(count) == 1

        await wait_until(credited, "the provider's callback credited")
        assert (await client.get(amount_shift)).status_code == 400
        assert (await client.get(id_shift)).status_code == 200

    assert await refusals(stack, 1) == "signature_reused"
    await assert_wallets_exactly(stack, Wallets({("u9", "COIN"): 1}))


async def test_a_shifted_copy_that_arrives_before_the_original_is_refused(stack: Stack) -> None:
    """The original answered 503, or held back on the path: the copies an attacker sends first
    fail their formats at the edge, so the provider's retry is what gets credited."""
    await stack.start_ingress()
    await stack.start_worker()
    original, amount_shift, _, time_shift = shifted_offerwall_paths()
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for path in (amount_shift, time_shift):
            response = await client.get(path)
            assert (response.status_code, response.json()["is_valid"]) == (400, False)
            assert response.json()["error"] == "malformed"
        assert (await client.get(original)).status_code == 200

        async def credited() -> bool:
            count = await stack.fetchval("SELECT count(*) FROM payouts WHERE status = 'credited'")
            return int(count) == 1

        await wait_until(credited, "the provider's callback credited")
    assert await stack.fetchval("SELECT count(*) FROM payouts") == 1
    assert await stack.fetchval("SELECT count(*) FROM payout_conflicts") == 0
    await assert_wallets_exactly(stack, Wallets({("u9", "COIN"): 1}))


@pytest.mark.parametrize("sent_first", [0, 1, 2])
async def test_boundary_shifted_copies_racing_the_callback_credit_exactly_one(
    stack: Stack, sent_first: int
) -> None:
    """Copies in flight at once, here spread over two workers, commit in no set order
    (docs/security.md): any one of those that pass the edge may win, never two. Each starts
    from another copy, so that over the runs each can be the one that wins."""
    await stack.start_ingress()
    await stack.start_worker()
    await stack.start_worker()
    original, amount_shift, id_shift, _ = shifted_offerwall_paths()
    paths = [original, amount_shift, id_shift]
    racing = paths[sent_first:] + paths[:sent_first]
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        responses = await asyncio.gather(*(client.get(path) for path in racing))
    # The amount shift fails android_id's format at the edge; the id shift only the signature
    # rule can catch, after whichever of the two commits first.
    assert [response.status_code for response in responses] == [
        400 if path == amount_shift else 200 for path in racing
    ]

    outcomes = await refusals(stack, 1)
    credited = await stack.fetchval(
        "SELECT array_agg((user_id, amount)) FROM payouts WHERE status = 'credited'"
    )
    assert len(credited) == 1
    user, amount = credited[0]
    assert (user, amount) in {("u9", 1), ("3u9", 1)}  # the provider's callback or the id shift
    assert outcomes == "signature_reused"
    await assert_wallets_exactly(stack, Wallets({(user, "COIN"): amount}))


async def test_two_workers_drain_mixed_payouts_to_exact_balances(stack: Stack) -> None:
    await stack.start_ingress()
    workers = [await stack.start_worker(), await stack.start_worker()]
    unique, expected = mixed_traffic(2000, seed=1)
    rng = random.Random(2)
    retries = [rng.choice(unique) for _ in range(400)]  # providers re-sending the same callback
    responses = await send_all(stack, unique + retries)
    assert Counter(r.status_code for r in responses) == Counter({200: 2400})

    async def drained() -> bool:
        return await processed_deliveries(stack) == 2400

    await wait_until(drained, "2400 deliveries processed", DRAIN_TIMEOUT_SECONDS)
    await assert_wallets_exactly(stack, expected)
    assert await stack.fetchval("SELECT count(*) FROM payouts") == 2000
    assert all("payout processed" in worker.log() for worker in workers)


async def test_callbacks_queue_up_without_workers_and_are_credited_later(stack: Stack) -> None:
    await stack.start_ingress()
    paths, expected = mixed_traffic(300, seed=3)
    responses = await send_all(stack, paths)
    assert {r.status_code for r in responses} == {200}
    # Messages, not payouts: callbacks gathered during a publish share an envelope.
    assert 0 < await stack.queue_depth() <= 300
    assert await stack.fetchval("SELECT count(*) FROM payouts") == 0

    await stack.start_worker()

    async def drained() -> bool:
        return await processed_deliveries(stack) == 300

    await wait_until(drained, "queued callbacks credited", DRAIN_TIMEOUT_SECONDS)
    await assert_wallets_exactly(stack, expected)


async def sigkill_after_first_credits(stack: Stack, doomed: Process, total: int) -> None:
    """SIGKILL `doomed` once it has credited some of the `total` payouts, well before all."""

    async def some_credited() -> bool:
        return int(await stack.fetchval("SELECT count(*) FROM payouts")) >= 150

    await wait_until(some_credited, "first credits", DRAIN_TIMEOUT_SECONDS)
    doomed.signal(signal.SIGKILL)
    assert doomed.popen.wait(10) == -signal.SIGKILL
    assert int(await stack.fetchval("SELECT count(*) FROM payouts")) < total, "killed too late"


async def drain_with_a_new_worker(stack: Stack, total: int) -> None:
    """Start a worker and wait until all `total` payouts are processed and nothing is pending."""
    await stack.start_worker()

    async def drained() -> bool:
        return (
            int(await stack.fetchval("SELECT count(*) FROM payouts")) == total
            and await stack.pending() == 0
        )

    await wait_until(drained, "every accepted payout processed", DRAIN_TIMEOUT_SECONDS)


async def test_worker_killed_mid_stream_leaves_every_payout_credited_once(stack: Stack) -> None:
    await stack.start_ingress()
    doomed = await stack.start_worker()
    paths, expected = mixed_traffic(1200, seed=4)
    sending = asyncio.create_task(send_all(stack, paths, concurrency=8))

    async def some_credited() -> bool:
        return int(await stack.fetchval("SELECT count(*) FROM payouts")) >= 150

    await sigkill_after_first_credits(stack, doomed, 1200)
    responses = await sending
    assert {r.status_code for r in responses} == {200}
    await drain_with_a_new_worker(stack, 1200)
    await assert_wallets_exactly(stack, expected)
    assert await stack.fetchval("SELECT count(*) FROM ledger_entries") == 2400


async def test_worker_killed_mid_envelope_leaves_every_enclosed_payout_credited_once(
    stack: Stack,
) -> None:
    """Envelopes the killed worker had credited in part come back whole: the redelivery credits
    the rest, and what was committed is a duplicate."""
    events = [
        payout_event(user_id=f"env-{n % 7}", amount=Decimal(n % 5 + 1)) for n in range(ENVELOPED)
    ]
    publisher = ConfirmedPublisher(
        BrokerSettings(
            urls=(stack.broker_url,), namespace=stack.namespace, retry_delays_seconds=RETRY_TIERS
        ),
        "test",
    )
    publisher.start()
    try:
        await publisher.wait_ready()
        await asyncio.gather(
            *(publisher.publish_envelope(events[i : i + 50]) for i in range(0, ENVELOPED, 50))
        )
    finally:
        await publisher.close()
    await sigkill_after_first_credits(stack, await stack.start_worker(), ENVELOPED)
    await drain_with_a_new_worker(stack, ENVELOPED)
    assert await stack.fetchval("SELECT count(*) FROM ledger_entries") == 2 * ENVELOPED
    expected: Counter[str] = Counter()
    for each in events:
        expected[each.user_id] += int(each.amount)
    for user, total in expected.items():
        balance = await stack.fetchval(
            "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = $1", user
        )
        assert balance == Decimal(total), user
    conn = await asyncpg.connect(stack.database_url)
    try:
        await assert_books_balance(conn)
    finally:
        await conn.close()


async def test_sigterm_lets_each_process_finish_its_work_and_exit_zero(stack: Stack) -> None:
    ingress = await stack.start_ingress()
    worker = await stack.start_worker()
    paths, expected = mixed_traffic(400, seed=11)
    sending = asyncio.create_task(send_all(stack, paths, concurrency=16))

    async def some_credited() -> bool:
        return int(await stack.fetchval("SELECT count(*) FROM payouts")) >= 50

    await wait_until(some_credited, "first credits")
    assert worker.stop() == 0  # SIGTERM: in-flight payouts finish, the rest stays queued
    responses = await sending
    assert {r.status_code for r in responses} == {200}

    in_flight = [asyncio.create_task(send_one(stack, path)) for path in paths[:40]]
    await asyncio.sleep(0.05)
    # SIGTERM: uvicorn stops accepting, answers what is in flight, shuts the app down (closing
    # the broker connection), then ends by re-raising the signal, as is its convention.
    assert ingress.stop() == -signal.SIGTERM
    assert "Application shutdown complete." in ingress.log()
    answers = await asyncio.gather(*in_flight, return_exceptions=True)
    # A request is answered 200 (and was published) or gets no answer, which providers retry;
    # never an error status and never a broken 200.
    assert all(isinstance(a, httpx.TransportError) or a == 200 for a in answers), answers
    assert "worker stopped" in worker.log()
    assert '"exit_code": 0' in worker.log()

    await stack.start_worker()

    async def drained() -> bool:
        return int(await stack.fetchval("SELECT count(*) FROM payouts")) == 400

    await wait_until(drained, "the rest credited by the next worker", DRAIN_TIMEOUT_SECONDS)
    await assert_wallets_exactly(stack, expected)


async def test_wallet_payouts_answer_consistent_balances_through_a_worker_crash(
    stack: Stack,
) -> None:
    await stack.start_ingress()
    doomed = await stack.start_worker()
    await stack.start_worker()
    rng = random.Random(7)
    payouts = [
        {
            "agent_id": "agent001",
            "user_id": f"player-{rng.randrange(10)}",
            "game_id": "101",
            "inst_id": "000002",
            "shoe_id": 1,
            "round_id": n,
            "bet_txn_id": f"bet-{n:05d}",
            "win_amount": f"{rng.randint(0, 5000)}.{rng.randint(0, 99):02d}",
            "pay_out_time": 1763800000000,
            "currency": "VND2",
        }
        for n in range(150)
    ]
    limit = asyncio.Semaphore(12)

    async def settle(fields: dict[str, object]) -> list[dict[str, Any]]:
        async with limit:
            return await settle_like_the_platform(client, fields)

    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        # Every payout sent twice at once: the platform's retry racing its first attempt.
        sending = asyncio.gather(*(settle(fields) for fields in payouts for _ in range(2)))

        async def some_credited() -> bool:
            return int(await stack.fetchval("SELECT count(*) FROM payouts")) >= 30

        await wait_until(some_credited, "first credits", DRAIN_TIMEOUT_SECONDS)
        doomed.signal(signal.SIGKILL)
        assert doomed.popen.wait(10) == -signal.SIGKILL
        assert int(await stack.fetchval("SELECT count(*) FROM payouts")) < 150, "killed too late"
        settled = await sending
        an_hour_ago = int((time.time() - 3600) * 1000)
        late = await client.post(
            "/aigame/v1/wallet/payout",
            json=aigame_payout_body({**payouts[0], "timestamp": an_hour_ago}, AIGAME_KEY),
        )

    balances: dict[str, set[str]] = {}
    for index, answers in enumerate(settled):
        balances.setdefault(str(payouts[index // 2]["bet_txn_id"]), set()).add(
            json.dumps(answers[-1]["data"])
        )
    assert all(len(seen) == 1 for seen in balances.values()), "one transaction, one balance"
    assert late.json()["data"] == json.loads(next(iter(balances["bet-00000"])))

    expected: dict[tuple[str, str], Decimal] = {}
    for fields in payouts:
        key = (str(fields["user_id"]), "VND2")
        expected[key] = expected.get(key, Decimal(0)) + Decimal(str(fields["win_amount"]))
    await assert_wallets_exactly(stack, expected)
    for (user, _), total in expected.items():
        answered = {
            Decimal(json.loads(text)["balance"])
            for index, fields in enumerate(payouts)
            if fields["user_id"] == user
            for text in balances[str(fields["bet_txn_id"])]
        }
        assert max(answered) == total, f"{user}: the last credit's balance is the total"
