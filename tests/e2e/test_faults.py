"""Fault runs: real processes under provider traffic while parts fail, then a reconciliation of
what every provider was told against the books. Lost, duplicated and unexpected must be zero."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest

from schema.topology import ROUTING_KEY, Topology
from tests.broker_admin import close_connections
from tests.e2e.fault_runs import assert_envelopes_published, run_under_fault, settle
from tests.e2e.provider import ProviderSimulator, reconcile
from tests.e2e.stack import RETRY_TIERS
from tests.polling import wait_until
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.e2e.stack import Process, Stack
    from tests.service_control import ServiceControl


async def test_workers_killed_repeatedly_under_load(stack: Stack) -> None:
    rng = random.Random(7)

    async def kill_and_replace(running: list[Process]) -> None:
        for _round in range(4):
            await asyncio.sleep(1.5)
            victim = rng.choice([p for p in running if p.popen.poll() is None])
            victim.signal(signal.SIGKILL)
            running.append(await stack.start_worker())

    (await run_under_fault(stack, kill_and_replace, seed=1)).assert_clean()


async def test_broker_connections_dropped_mid_load(stack: Stack) -> None:
    """Every connection of this run's processes closed by the broker, twice; no other run's."""
    closed: list[int] = []

    async def drop_twice(_: list[Process]) -> None:
        for _round in range(2):
            await asyncio.sleep(1.5)
            closed.append(await asyncio.to_thread(close_connections, stack.namespace))

    (await run_under_fault(stack, drop_twice, seed=2)).assert_clean()
    assert closed[0] > 0, "no connection of this run to drop"


@pytest.mark.disruptive
async def test_broker_stopped_and_started_mid_load(
    stack: Stack, service_control: ServiceControl
) -> None:
    async def restart(_: list[Process]) -> None:
        await asyncio.sleep(1.5)
        async with service_control.broker_stopped():
            await asyncio.sleep(3)

    result = await run_under_fault(stack, restart, seed=3)
    result.assert_clean()
    assert 503 in result.details["answers"], "the outage never reached a provider"


async def test_connection_reset_between_publish_and_confirm(stack: Stack) -> None:
    proxy = await TcpProxy.in_front_of(stack.broker_url)

    async def reset_repeatedly(_: list[Process]) -> None:
        for _round in range(4):
            await asyncio.sleep(1)
            await proxy.cut()  # every publish in flight loses its confirm
            await asyncio.sleep(0.5)
            await proxy.restore()

    try:
        result = await run_under_fault(
            stack, reset_repeatedly, seed=4, ingress_broker_url=proxy.url_through(stack.broker_url)
        )
    finally:
        await proxy.close()
    result.assert_clean()
    assert 503 in result.details["answers"], "no reset ever reached a provider"


@pytest.mark.disruptive
async def test_database_cut_off_then_postgres_killed_and_restarted(
    stack: Stack, service_control: ServiceControl
) -> None:
    proxy = await TcpProxy.in_front_of(stack.database_url)

    async def cut_then_crash(_: list[Process]) -> None:
        await asyncio.sleep(1)
        await proxy.cut()
        await asyncio.sleep(3)  # longer than the in-place retries: deliveries go to the tiers
        await proxy.restore()
        await asyncio.sleep(1)
        async with service_control.postgres_killed(stack.database_url):
            await asyncio.sleep(1.5)

    try:
        result = await run_under_fault(
            stack, cut_then_crash, seed=5, worker_database_url=proxy.url_through(stack.database_url)
        )
    finally:
        await proxy.close()
    result.assert_clean()
    assert any("delivery failed; retrying later" in p.log() for p in stack.processes)


async def test_database_backends_terminated_mid_load(stack: Stack) -> None:
    database = urlsplit(stack.database_url).path.lstrip("/")

    async def terminate_for_three_seconds(_: list[Process]) -> None:
        await asyncio.sleep(1)
        conn = await asyncpg.connect(stack.database_url)
        try:
            for _round in range(60):
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    (await run_under_fault(stack, terminate_for_three_seconds, seed=10)).assert_clean()
    assert any("transient failure" in p.log() for p in stack.processes)


async def test_poison_in_the_middle_of_good_traffic(stack: Stack) -> None:
    topology = Topology(stack.namespace, RETRY_TIERS)

    async def inject_poison(_: list[Process]) -> None:
        await asyncio.sleep(1)
        connection = await aio_pika.connect(stack.broker_url)
        async with connection:
            exchange = await (await connection.channel()).get_exchange(topology.exchange)
            for body in (b"\x00\xff", b"[]", b'{"contract_version": 1}'):
                await exchange.publish(aio_pika.Message(body, message_id="poison"), ROUTING_KEY)

    (await run_under_fault(stack, inject_poison, seed=6)).assert_clean()

    async def poison_dead_lettered() -> bool:
        return await stack.queue_depth(topology.dead_letter_queue) == 3

    await wait_until(poison_dead_lettered, "the three poison messages dead-lettered")


@pytest.mark.disruptive
async def test_worker_paused_past_the_consumer_timeout(
    stack: Stack, service_control: ServiceControl
) -> None:
    """SIGSTOP a worker holding deliveries, past the (lowered) consumer timeout.

    The broker closes a timed-out consumer's channel, but a frozen process never answers the
    close, so its deliveries are released when its connection dies: the AMQP heartbeat (5 s here)
    does that. They are redelivered to the other worker. Resumed, the frozen worker finds its
    channel gone: its acks fail, which is logged, not fatal, and nothing is credited twice.
    Frozen inside a transaction, it held its wallets' row locks until Postgres's idle-in-transaction
    timeout (10 s) rolled that transaction back."""
    async with service_control.consumer_timeout(3000):
        paused: list[Process] = []

        async def pause_one(running: list[Process]) -> None:
            await asyncio.sleep(1)
            paused.append(running[0])
            running[0].signal(signal.SIGSTOP)

        result = await run_under_fault(
            stack, pause_one, seed=8, worker_broker_url=f"{stack.broker_url}?heartbeat=5"
        )

        async def redelivered_to_the_other() -> bool:
            return '"redelivered": true' in stack.processes[-1].log()

        try:
            await wait_until(
                redelivered_to_the_other, "the paused worker's deliveries redelivered", 90
            )
        finally:
            paused[0].signal(signal.SIGCONT)
        await asyncio.sleep(3)
        assert paused[0].popen.poll() is None, "the resumed worker crashed:\n" + paused[0].log()
        await settle(stack)
        result = await reconcile(stack, result.payouts)
    result.assert_clean()


async def test_business_failure_fixed_and_replayed_through_the_real_pipeline(stack: Stack) -> None:
    """Payouts for users whose wallets do not exist yet are accepted, held and dead-lettered;
    the game creates the wallets; an engineer replays; every payout is credited exactly once."""
    await stack.start_ingress()
    await stack.start_worker()
    provider = ProviderSimulator(stack, seed=12, offerwall="offerwall-strict")
    await provider.run(60)
    users = {payout.user_id for payout in provider.payouts}
    dead_letter_queue = Topology(stack.namespace, RETRY_TIERS).dead_letter_queue

    async def all_dead_lettered() -> bool:
        # Re-sent callbacks of a held payout add entries of their own: count transactions.
        distinct = await stack.fetchval("SELECT count(DISTINCT transaction_id) FROM dead_letters")
        return int(distinct) == 60 and await stack.pending() == 0

    await wait_until(all_dead_lettered, "every held payout dead-lettered")
    entries = await stack.queue_depth(dead_letter_queue)
    held = await reconcile(stack, provider.payouts)
    held.assert_clean()  # held is recorded, not lost
    assert held.details["credited"] == 0
    await assert_envelopes_published(stack, held)  # held ones came out of envelopes too

    conn = await asyncpg.connect(stack.database_url)
    try:  # the fix: the game creates its users' wallets, crediting nothing itself
        await conn.executemany(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', $1, 'COIN')",
            [(user,) for user in users],
        )
    finally:
        await conn.close()
    replay = await asyncio.to_thread(
        stack.run, "dlq", "replay", "--reason", "business", "--rate", "200", "--json"
    )
    assert json.loads(replay.stdout)["replayed"] == entries, replay.stderr
    await settle(stack)
    replayed = await reconcile(stack, provider.payouts)
    replayed.assert_clean()
    assert replayed.details["credited"] == 60
    assert await stack.queue_depth(dead_letter_queue) == 0


async def test_the_checker_reports_lost_duplicated_and_unexpected_credits(stack: Stack) -> None:
    """The reconciliation every fault run relies on, shown to catch what it claims to."""
    await stack.start_ingress()
    await stack.start_worker()
    provider = ProviderSimulator(stack, seed=9)
    await provider.run(20)
    await settle(stack)
    assert (await reconcile(stack, provider.payouts)).summary()["lost"] == 0

    lost, doubled = provider.payouts[0], provider.payouts[1]
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with conn.transaction():
            for statement in DAMAGE:
                await conn.execute(statement, lost.transaction_id, doubled.transaction_id)
    finally:
        await conn.close()
    damaged = await reconcile(stack, provider.payouts)
    assert damaged.lost == [lost.transaction_id]
    assert damaged.duplicated == [doubled.transaction_id]
    assert any("ghost" in item for item in damaged.unexpected)


# $1: a payout to forget; $2: a payout to credit a second time. Then a credit nobody asked for.
DAMAGE = (
    "DELETE FROM ledger_entries WHERE payout_id = "
    "(SELECT payout_id FROM payouts WHERE transaction_id = $1 AND $2 <> '')",
    "DELETE FROM payouts WHERE transaction_id = $1 AND $2 <> ''",
    "INSERT INTO ledger_entries (payout_id, account_id, amount) "
    "SELECT e.payout_id, e.account_id, e.amount FROM ledger_entries e JOIN payouts p "
    "USING (payout_id) WHERE p.transaction_id = $2 AND $1 <> ''",
    "INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount, "
    "currency, signature, create_account, status, outcome, answer_code, raw_request, received_at, "
    "credited_at) SELECT 'offerwall', 'ghost', gen_random_uuid(), 'offerwall_md5', 'x', 1, 'COIN', "
    "'ghost-sign', true, 'credited', 'credited', '200', '{}', now(), now() WHERE $1 <> $2",
)
