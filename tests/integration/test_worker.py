"""The worker in-process against real RabbitMQ and Postgres: failures lose and double nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest
from prometheus_client import generate_latest

from broker.deliveries import Delivery, channel_of
from broker.publisher import ConfirmedPublisher, persistent_message
from schema.envelopes import ENVELOPE_TYPE
from schema.events import EVENT_TYPE, decode_event, encode_event
from schema.logs import logged_fields
from schema.settings import BrokerSettings, DatabaseSettings, Settings, WorkerSettings
from schema.topology import ROUTING_KEY, Topology
from tests.books import assert_books_balance
from tests.broker_admin import close_connections
from tests.factories import payout_event
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from tests.services import queue_depth
from tests.tcp_proxy import TcpProxy
from workers.consumer import Worker
from workers.database import create_pool_when_available
from workers.envelope_deliveries import ENVELOPE_ID
from workers.failures import ATTEMPTS, ERROR_MESSAGE, ERROR_TYPE, KIND
from workers.moves import move_finish_seconds

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aio_pika.abc import AbstractIncomingMessage

    from schema.events import PayoutEvent
    from tests.services import Services

OBSERVER = "payouts-test-observer"
# Short retry tiers, so a test sees a message go through all of them in seconds.
TEST_TIERS = (1, 2, 4, 8)


@pytest.fixture
async def settings(services: Services, database_url: str) -> AsyncIterator[Settings]:
    built = Settings(
        database=DatabaseSettings(url=database_url, pool_max_size=8, acquire_timeout_seconds=5),
        broker=BrokerSettings(
            urls=(services.rabbitmq_url,),
            namespace=services.new_namespace(TEST_TIERS),
            retry_delays_seconds=TEST_TIERS,
        ),
        worker=WorkerSettings(
            prefetch=8, in_place_retry_seconds=0.5, shutdown_grace_seconds=5, status_port=0
        ),
    )
    yield built
    await services.release_namespace(built.broker.namespace)


@asynccontextmanager
async def publisher_for(settings: Settings) -> AsyncIterator[ConfirmedPublisher]:
    publisher = ConfirmedPublisher(settings.broker, "test")
    publisher.start()

    async def ready() -> bool:
        return publisher.ready

    await wait_until(ready, "publisher connected")
    try:
        yield publisher
    finally:
        await publisher.close()


@asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[asyncio.Task[int]]:
    stop = asyncio.Event()
    pool = await create_pool_when_available(settings.database)
    task = asyncio.create_task(Worker(settings, pool).run(stop))
    try:
        yield task
    finally:
        stop.set()
        await task
        await pool.close()


def event(user: str, amount: int) -> PayoutEvent:
    return payout_event(user_id=user, amount=Decimal(amount))


@pytest.fixture
async def observer(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's own look at the books, closed even when the test fails."""
    conn: asyncpg.Connection = await asyncpg.connect(
        database_url, server_settings={"application_name": OBSERVER}
    )
    try:
        yield conn
    finally:
        await conn.close()


async def count(conn: asyncpg.Connection, query: str) -> int:
    return int(await conn.fetchval(query))


async def test_poison_message_is_dead_lettered_and_the_queue_keeps_flowing(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    topology = Topology.from_settings(settings.broker)
    valid = event("dana", 9)
    async with publisher_for(settings) as publisher:
        connection = await aio_pika.connect(settings.broker.urls[0])
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(topology.exchange)
            for body in (b"not json at all", b'{"contract_version": 99}'):
                await exchange.publish(aio_pika.Message(body, message_id="poison"), ROUTING_KEY)
            await publisher.publish_event(valid)
            async with worker_running(settings):

                async def credited() -> bool:
                    return await count(observer, "SELECT count(*) FROM payouts") == 1

                await wait_until(credited, "valid payout credited after the poison")
            dead_queue = await channel.get_queue(topology.dead_letter_queue)
            dead = [await dead_queue.get(no_ack=True, timeout=5) for _ in range(2)]
    assert sorted(m.body for m in dead) == [b"not json at all", b'{"contract_version": 99}']
    assert {m.delivery_mode for m in dead} == {aio_pika.DeliveryMode.PERSISTENT}


async def test_a_payout_the_database_refuses_amid_a_batch_is_dead_lettered_alone(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole batch rolls back; its payouts are then credited one by one, so the refused one
    goes to the dead-letter queue and the others are credited, once each."""
    caplog.set_level(logging.INFO)
    topology = Topology.from_settings(settings.broker)
    events = [event(f"user-{i % 3}", i + 1) for i in range(7)]
    refused = event("nul\x00user", 5)  # Postgres text cannot hold NUL: a DataError
    async with publisher_for(settings) as publisher:
        for published in [*events[:3], refused, *events[3:]]:
            await publisher.publish_event(published)
        async with worker_running(settings):

            async def credited() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == len(events)

            await wait_until(credited, "the good payouts credited")
        connection = await aio_pika.connect(settings.broker.urls[0])
        async with connection:
            dead_queue = await (await connection.channel()).get_queue(topology.dead_letter_queue)
            dead = await dead_queue.get(no_ack=True, timeout=5)
        await assert_books_balance(observer)
        balances = await observer.fetch("SELECT owner, balance FROM accounts WHERE kind = 'wallet'")
    assert dead.headers["x-payouts-failure-kind"] == "poison"
    assert dead.headers["x-payouts-error-type"] == "CharacterNotInRepertoireError"
    expected: dict[str, Decimal] = {}
    for credited_event in events:
        user = credited_event.user_id
        expected[user] = expected.get(user, Decimal(0)) + credited_event.amount
    assert {row["owner"]: row["balance"] for row in balances} == expected
    messages = [record.getMessage() for record in caplog.records]
    assert "batch failed; crediting its payouts one by one" in messages


async def test_payouts_credited_one_by_one_after_a_batch_failed_keep_their_batch_order(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    """Each gets the balance it would have had alone: credited in the order they arrived."""
    amounts = [1, 2, 3, 4, 5, 6]
    events = [event("orderly", amount) for amount in amounts]
    async with publisher_for(settings) as publisher:
        for published in [events[0], event("nul\x00user", 5), *events[1:]]:
            await publisher.publish_event(published)
        async with worker_running(settings):

            async def credited() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == len(events)

            await wait_until(credited, "the good payouts credited")
    rows = await observer.fetch(
        "SELECT event_id, balance_after FROM payouts WHERE user_id = $1", "orderly"
    )
    balances = {row["event_id"]: row["balance_after"] for row in rows}
    running_total = [sum(amounts[: n + 1]) for n in range(len(amounts))]
    assert [balances[published.event_id] for published in events] == running_total


async def test_killed_database_connections_are_retried_without_double_credit(
    settings: Settings,
    observer: asyncpg.Connection,
    services: Services,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kill every worker backend for a while: some deliveries outlast the in-place retries and
    wait in a retry tier; when the database settles, each payout is credited exactly once."""
    events = [event(f"user-{i % 7}", i + 1) for i in range(300)]
    database_name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(services.postgres_admin_url)

    async def kill_worker_connections_for(seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name <> $2",
                database_name,
                OBSERVER,
            )
            await asyncio.sleep(0.02)

    try:
        async with publisher_for(settings) as publisher, worker_running(settings):
            await asyncio.gather(*(publisher.publish_event(e) for e in events))
            await kill_worker_connections_for(4)

            async def all_credited() -> bool:
                return (
                    await count(observer, "SELECT count(*) FROM payouts WHERE status = 'credited'")
                    == 300
                )

            await wait_until(all_credited, "all payouts credited despite killed connections", 120)
        messages = [record.getMessage() for record in caplog.records]
        assert "transient failure, retrying in place" in messages
        assert "delivery failed; retrying later" in messages
        assert await count(observer, "SELECT count(*) FROM ledger_entries") == 600
        for user in {e.user_id for e in events}:
            expected = sum(e.amount for e in events if e.user_id == user)
            balance = await observer.fetchval(
                "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = $1", user
            )
            assert balance == expected
        await assert_books_balance(observer)
    finally:
        await admin.close()


async def test_a_funding_account_a_failover_lost_is_created_again(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    """A worker remembers committed funding account ids. A failover to a replica that had not
    received those commits takes the accounts away: the failed batch makes the worker look them
    up again, so the payout is credited on its first retry, not dead-lettered after the last."""
    topology = Topology.from_settings(settings.broker)
    async with publisher_for(settings) as publisher, worker_running(settings):
        for credited_so_far, payout in enumerate((event("kim", 1), event("kim", 2)), start=1):
            await publisher.publish_event(payout)

            async def credited(n: int = credited_so_far) -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == n

            await wait_until(credited, "payout credited, its funding account remembered")
        # The new primary never received them: the books are as before the first payout.
        await observer.execute("TRUNCATE ledger_entries, payouts, accounts CASCADE")
        await publisher.publish_event(event("kim", 3))

        async def credited_again() -> bool:
            return await count(observer, "SELECT count(*) FROM payouts") == 1

        await wait_until(credited_again, "payout after the failover credited")
    assert await queue_depth(settings.broker.urls[0], topology.dead_letter_queue) == 0
    assert await observer.fetchval("SELECT balance FROM accounts WHERE owner = 'kim'") == 3
    await assert_books_balance(observer)


async def test_worker_resumes_consuming_after_its_connection_is_closed(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    async with publisher_for(settings) as publisher, worker_running(settings):
        first = [event("frank", 1) for _ in range(20)]
        await asyncio.gather(*(publisher.publish_event(e) for e in first))

        async def credited(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == n

            return check

        await wait_until(await credited(20), "first batch credited")
        assert close_connections(settings.broker.namespace, "worker") == 1
        second = [event("frank", 1) for _ in range(20)]
        await asyncio.gather(*(publisher.publish_event(e) for e in second))
        await wait_until(await credited(40), "second batch credited after the reconnect", 60)


def database_through(proxy: TcpProxy, settings: Settings, **worker: float) -> Settings:
    """`settings` with the worker's database reached through `proxy`, and `worker` changed."""
    return settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": proxy.url_through(settings.database.url)}
            ),
            "worker": settings.worker.model_copy(update=worker),
        }
    )


async def test_a_batch_the_database_is_away_for_waits_in_a_retry_tier_whole(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The database unreachable through the in-place retries says nothing about any one payout:
    every payout of the batch goes to the first retry tier at once, none is tried again one by
    one first, and once the database is back each is credited once."""
    caplog.set_level(logging.INFO)
    proxy = await TcpProxy.in_front_of(settings.database.url)
    # A linger long enough for the six deliveries to make one batch on a slow machine.
    cut_off = database_through(proxy, settings, batch_linger_seconds=0.5)
    events = [event(f"hana-{i}", i + 1) for i in range(6)]

    def logged(message: str) -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.getMessage() == message]

    async def all_waiting() -> bool:
        return len(logged("delivery failed; retrying later")) >= len(events)

    async def all_credited() -> bool:
        return await count(observer, "SELECT count(*) FROM payouts") == len(events)

    try:
        async with publisher_for(settings) as publisher, worker_running(cut_off):
            await proxy.cut()
            await asyncio.gather(*(publisher.publish_event(e) for e in events))
            await wait_until(all_waiting, "the batch's payouts sent to a retry tier")
            await proxy.restore()
            await wait_until(all_credited, "every payout credited once the database is back")
    finally:
        await proxy.close()
    assert logged("batch failed on a transient error; its payouts wait in a retry tier")
    in_place = logged("transient failure, retrying in place")
    assert in_place, "the batch was not retried in place first"
    assert all("batch_size" in logged_fields(record) for record in in_place), (
        "a payout was retried in place on its own after its batch failed"
    )
    balances = await observer.fetch("SELECT owner, balance FROM accounts WHERE kind = 'wallet'")
    assert {row["owner"]: row["balance"] for row in balances} == {
        e.user_id: e.amount for e in events
    }
    await assert_books_balance(observer)


async def test_a_frozen_workers_row_locks_are_released_for_the_others(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    """A worker frozen inside its transaction (a stuck VM, SIGSTOP) holds its wallets' row locks.
    Postgres ends that transaction after `idle_in_transaction_timeout_seconds`, so the other
    workers' credits to the same wallet go on instead of waiting for the frozen one for good."""
    quick = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"idle_in_transaction_timeout_seconds": 1}
            )
        }
    )
    frozen_pool = await create_pool_when_available(quick.database)

    async def credited(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await count(observer, "SELECT count(*) FROM payouts") == n

        return check

    try:
        async with publisher_for(quick) as publisher, worker_running(quick):
            await publisher.publish_event(event("gina", 1))
            await wait_until(await credited(1), "the wallet created by a first credit")
            frozen = await frozen_pool.acquire()
            await frozen.execute("BEGIN")
            await frozen.execute(
                "SELECT 1 FROM accounts WHERE kind = 'wallet' AND owner = 'gina' FOR UPDATE"
            )
            # Frozen from here: not another word to Postgres while the worker needs that row.
            await asyncio.gather(*(publisher.publish_event(event("gina", 1)) for _ in range(5)))
            await wait_until(await credited(6), "credits past the frozen transaction's lock", 30)
    finally:
        frozen_pool.terminate()
    assert await observer.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = 'gina'"
    ) == Decimal(6)
    await assert_books_balance(observer)


async def test_stop_finishes_in_flight_work_and_leaves_the_rest_queued(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = [event("erin", 1) for _ in range(400)]
    async with publisher_for(settings) as publisher:
        await asyncio.gather(*(publisher.publish_event(e) for e in events))
        async with worker_running(settings):

            async def started() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") >= 20

            await wait_until(started, "first credits")
        # The worker has stopped: what it committed is acked, the rest goes back to the queue.
        # A quorum queue applies the return of a closed channel's deliveries through its log,
        # so the depth catches up a moment after the close.
        credited = await count(observer, "SELECT count(*) FROM payouts")
        assert credited < 400, "stopped too late to show anything"
        work_queue = Topology.from_settings(settings.broker).work_queue

        async def the_rest_queued() -> bool:
            waiting = await queue_depth(settings.broker.urls[0], work_queue)
            assert credited + waiting <= 400, f"{credited} credited, yet {waiting} still queued"
            return credited + waiting == 400

        await wait_until(the_rest_queued, "every uncredited payout back in the work queue", 10)
        messages = [record.getMessage() for record in caplog.records]
        assert messages.count("payout processed") == credited  # each one committed and acked
        assert "shutdown cancelled in-flight payouts" not in messages
        assert "worker stopped" in messages

        async with worker_running(settings):

            async def all_credited() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == 400

            await wait_until(all_credited, "the rest credited by the next worker")
    assert await observer.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = 'erin'"
    ) == Decimal(400)
    await assert_books_balance(observer)


class PausingAfterConfirm(ConfirmedPublisher):
    """The worker's publisher against the real broker, pausing after each confirmed publish: the
    window in which a shutdown's cancel left a dead-letter copy and the redelivered original."""

    def __init__(self, settings: BrokerSettings, pause_seconds: float) -> None:
        super().__init__(settings, "worker-publisher")
        self.pause_seconds = pause_seconds
        self.confirmed = asyncio.Event()

    async def publish(
        self,
        message: aio_pika.Message,
        *,
        exchange: str | None = None,
        routing_key: str = ROUTING_KEY,
    ) -> None:
        await super().publish(message, exchange=exchange, routing_key=routing_key)
        self.confirmed.set()
        await asyncio.sleep(self.pause_seconds)


async def stop_amid_dead_lettering(settings: Settings, pause_seconds: float) -> tuple[int, int]:
    """Stop a worker while it dead-letters a poison message, its publisher pausing for
    `pause_seconds` after the confirm; then the depths of the work and dead-letter queues."""
    quick = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"shutdown_grace_seconds": 0.05})}
    )
    topology = Topology.from_settings(settings.broker)
    pool = await create_pool_when_available(quick.database)
    pausing = PausingAfterConfirm(quick.broker, pause_seconds)
    stop = asyncio.Event()
    running: asyncio.Task[int] | None = None
    try:
        async with publisher_for(settings) as publisher:
            running = asyncio.create_task(Worker(quick, pool, pausing).run(stop))
            await publisher.publish(aio_pika.Message(b"not json", message_id="poison"))
            await asyncio.wait_for(pausing.confirmed.wait(), 30)
            stop.set()  # the dead-letter copy is confirmed; the original is not acked yet
            assert await asyncio.wait_for(running, 30) == 0, "the worker did not stop cleanly"
    finally:
        stop.set()
        if running is not None and not running.done():
            await asyncio.wait([running], timeout=30)
        await pool.close()

    async def dead_lettered() -> bool:
        return await queue_depth(settings.broker.urls[0], topology.dead_letter_queue) == 1

    await wait_until(dead_lettered, "the copy in the dead-letter queue")
    # A closed channel's deliveries return to a quorum queue within milliseconds: wait longer.
    await asyncio.sleep(2)
    return (
        await queue_depth(settings.broker.urls[0], topology.work_queue),
        await queue_depth(settings.broker.urls[0], topology.dead_letter_queue),
    )


def dead_letters_counted() -> float:
    return sample_value(
        generate_latest().decode(),
        "payouts_worker_dead_lettered_total",
        kind="poison",
        reason="ContractError",
    )


async def test_a_shutdown_amid_dead_lettering_leaves_one_message_not_two(
    settings: Settings,
) -> None:
    before = dead_letters_counted()
    assert await stop_amid_dead_lettering(settings, pause_seconds=3) == (0, 1)
    assert dead_letters_counted() - before == 1


async def test_a_shutdown_stops_a_move_that_outlasts_its_bound(settings: Settings) -> None:
    """Past its bound the worker stops anyway; the broker returns the original beside its copy:
    a duplicate, which crediting absorbs, never a loss."""
    assert move_finish_seconds(settings.broker) < 20
    assert await stop_amid_dead_lettering(settings, pause_seconds=60) == (1, 1)


async def test_worker_exits_for_a_restart_when_it_cannot_hold_a_consumer(
    settings: Settings,
) -> None:
    proxy = await TcpProxy.in_front_of(settings.broker.urls[0])
    through_proxy = proxy.url_through(settings.broker.urls[0])
    cut_off = settings.model_copy(
        update={
            "broker": settings.broker.model_copy(update={"urls": (through_proxy,)}),
            "worker": settings.worker.model_copy(update={"no_consumer_exit_seconds": 2.0}),
        }
    )
    pool = await create_pool_when_available(cut_off.database)
    try:
        task = asyncio.create_task(Worker(cut_off, pool).run(asyncio.Event()))
        async with publisher_for(settings):  # declares the topology the worker consumes from
            await asyncio.sleep(1)
        await proxy.cut()
        assert await asyncio.wait_for(task, 30) == 1
    finally:
        await pool.close()
        await proxy.close()


async def test_a_delivery_on_a_closed_channel_is_known_as_returned(services: Services) -> None:
    """The broker requeues what a closed channel held, so the worker must not publish a retry or
    dead-letter copy of it as well: it checks the delivery's channel first."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{services.new_namespace()}.closing", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
        underlay = await channel.get_underlay_channel()
        message = Delivery(await underlay.basic_get(queue.name))
        assert channel_of(message) is not None
        await channel.close()
        assert channel_of(message) is None
        with pytest.raises(aio_pika.exceptions.ChannelInvalidStateError):
            await message.ack()  # raised when awaited, where the worker's settling catches it


async def test_a_poison_message_does_not_hold_back_its_batch(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    """Its move to the dead-letter queue waits for the broker; the payouts delivered with it are
    credited first, not behind it (a provider waiting for the outcome would be told to retry)."""
    pool = await create_pool_when_available(settings.database)
    pausing = PausingAfterConfirm(settings.broker, pause_seconds=5)
    stop = asyncio.Event()
    running: asyncio.Task[int] | None = None
    try:
        async with publisher_for(settings) as publisher:
            # Delivered first, and in the same batch as the payouts behind it.
            await publisher.publish(aio_pika.Message(b"not json", message_id="poison"))
            for user in ("fern", "gus", "hal"):
                await publisher.publish_event(event(user, 5))
            running = asyncio.create_task(Worker(settings, pool, pausing).run(stop))
            await asyncio.wait_for(pausing.confirmed.wait(), 30)
            # The poison's copy is confirmed and its move is paused: the payouts are in already.
            assert await count(observer, "SELECT count(*) FROM payouts") == 3
    finally:
        stop.set()
        if running is not None:
            await asyncio.wait([running], timeout=30)
        await pool.close()


def envelope(message_id: str, *events: PayoutEvent | dict[str, object]) -> aio_pika.Message:
    """An envelope as the ingress will publish it; a dict stands for an event as sent, valid or
    not."""
    enclosed = [e if isinstance(e, dict) else json.loads(encode_event(e)) for e in events]
    return persistent_message(
        json.dumps({"envelope_version": 1, "events": enclosed}).encode(),
        content_type="application/json",
        message_id=message_id,
        type=ENVELOPE_TYPE,
    )


async def dead_letters(settings: Settings, expected: int) -> list[AbstractIncomingMessage]:
    """The dead-letter queue's messages, once it holds `expected` of them."""
    queue = Topology.from_settings(settings.broker).dead_letter_queue

    async def arrived() -> bool:
        return await queue_depth(settings.broker.urls[0], queue) >= expected

    await wait_until(arrived, f"{expected} dead letters")
    connection = await aio_pika.connect(settings.broker.urls[0])
    async with connection:
        dead_queue = await (await connection.channel()).get_queue(queue)
        return [await dead_queue.get(no_ack=True, timeout=5) for _ in range(expected)]


async def test_each_event_of_an_envelope_gets_its_own_outcome_and_the_delivery_one_ack(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Good events are credited, a conflicting one recorded, a held one and one that breaks the
    event contract dead-lettered each as a single-event message; the envelope is acked once,
    after all of them, and never comes back."""
    caplog.set_level(logging.INFO)
    first = event("ivy", 5)
    good = [event("jo", 3), event("jo", 4)]
    conflicting = payout_event(
        transaction_id=first.transaction_id, user_id="ivy", amount=Decimal(6)
    )
    held = payout_event(user_id="ken", create_account=False)
    poison = json.loads(encode_event(event("lee", 1))) | {"amount": 0.1}
    async with publisher_for(settings) as publisher, worker_running(settings):
        await publisher.publish_event(first)

        async def first_credited() -> bool:
            return await count(observer, "SELECT count(*) FROM payouts") == 1

        await wait_until(first_credited, "the first payout credited")
        await publisher.publish(envelope("envelope-1", good[0], poison, conflicting, held, good[1]))
        dead = await dead_letters(settings, 2)

        async def settled() -> bool:
            return await count(observer, "SELECT count(*) FROM payout_conflicts") == 1

        await wait_until(settled, "the conflict recorded")
        await asyncio.sleep(1)  # time for a wrongly returned envelope to come back
    statuses = await observer.fetch("SELECT user_id, status, duplicate_deliveries FROM payouts")
    assert sorted(tuple(row) for row in statuses) == [
        ("ivy", "credited", 0),
        ("jo", "credited", 0),
        ("jo", "credited", 0),
        ("ken", "held", 0),
    ]
    assert await observer.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = 'jo'"
    ) == Decimal(7)
    by_kind = {message.headers[KIND]: message for message in dead}
    assert set(by_kind) == {"poison", "business"}
    assert {m.type for m in dead} == {EVENT_TYPE}
    assert {m.headers[ENVELOPE_ID] for m in dead} == {"envelope-1"}
    assert {m.headers[ATTEMPTS] for m in dead} == {1}
    assert decode_event(by_kind["business"].body) == held
    assert by_kind["business"].message_id == str(held.event_id)
    assert json.loads(by_kind["poison"].body) == poison
    assert by_kind["poison"].message_id == poison["event_id"]
    assert "amount must be a decimal string" in str(by_kind["poison"].headers[ERROR_MESSAGE])
    assert "held_unknown_account" in str(by_kind["business"].headers[ERROR_TYPE])
    assert (
        await queue_depth(
            settings.broker.urls[0], Topology.from_settings(settings.broker).work_queue
        )
        == 0
    )
    messages = [record.getMessage() for record in caplog.records]
    assert "could not settle message; the broker will redeliver it" not in messages
    await assert_books_balance(observer)


async def test_a_malformed_envelope_is_dead_lettered_whole_with_its_reason(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    malformed = envelope("envelope-2", event("mo", 1)).body.replace(
        b'"envelope_version": 1', b'"envelope_version": 9'
    )
    async with publisher_for(settings) as publisher, worker_running(settings):
        await publisher.publish(
            persistent_message(malformed, message_id="envelope-2", type=ENVELOPE_TYPE)
        )
        (dead,) = await dead_letters(settings, 1)
    assert (dead.body, dead.type, dead.message_id) == (malformed, ENVELOPE_TYPE, "envelope-2")
    assert dead.headers[KIND] == "poison"
    assert "not a payout envelope" in str(dead.headers["x-payouts-error-message"])
    assert await count(observer, "SELECT count(*) FROM payouts") == 0


async def test_single_event_messages_and_envelopes_in_one_queue_are_all_credited(
    settings: Settings, observer: asyncpg.Connection
) -> None:
    """A rolling upgrade: an ingress of either version may have published what a worker gets."""
    singles = [event("nia", 1), event("nia", 2)]
    enveloped = [event("nia", 10), event("oto", 20), event("nia", 30)]
    async with publisher_for(settings) as publisher:
        await publisher.publish_event(singles[0])
        await publisher.publish_envelope(enveloped)
        await publisher.publish_event(singles[1])
        async with worker_running(settings):

            async def credited() -> bool:
                return await count(observer, "SELECT count(*) FROM payouts") == 5

            await wait_until(credited, "every payout credited")
    balances = await observer.fetch("SELECT owner, balance FROM accounts WHERE kind = 'wallet'")
    assert {row["owner"]: row["balance"] for row in balances} == {
        "nia": Decimal(43),
        "oto": Decimal(20),
    }
    await assert_books_balance(observer)


async def test_an_envelope_the_database_is_away_for_waits_in_a_retry_tier_as_single_events(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Each of its events goes to the retry tier as a message of its own (the envelope is acked
    once all are there); once the database is back each is credited once."""
    caplog.set_level(logging.INFO)
    proxy = await TcpProxy.in_front_of(settings.database.url)
    cut_off = database_through(proxy, settings)
    events = [event(f"pia-{i % 2}", i + 1) for i in range(6)]

    def retried() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "delivery failed; retrying later"]

    async def all_waiting() -> bool:
        return len(retried()) >= len(events)

    async def all_credited() -> bool:
        return await count(observer, "SELECT count(*) FROM payouts") == len(events)

    try:
        async with publisher_for(settings) as publisher, worker_running(cut_off):
            await proxy.cut()
            await publisher.publish_envelope(events)
            await wait_until(all_waiting, "the envelope's events sent to a retry tier")
            await proxy.restore()
            await wait_until(all_credited, "every payout credited once the database is back")
            await asyncio.sleep(1)  # time for a copy credited twice to show
    finally:
        await proxy.close()
    assert {logged_fields(r)["event_id"] for r in retried()[: len(events)]} == {
        str(e.event_id) for e in events
    }
    assert await count(observer, "SELECT count(*) FROM ledger_entries") == 2 * len(events)
    assert await count(observer, "SELECT sum(duplicate_deliveries) FROM payouts") == 0
    balances = await observer.fetch("SELECT owner, balance FROM accounts WHERE kind = 'wallet'")
    assert {row["owner"]: row["balance"] for row in balances} == {
        "pia-0": Decimal(1 + 3 + 5),
        "pia-1": Decimal(2 + 4 + 6),
    }
    await assert_books_balance(observer)


WAITING_ON_A_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


async def test_a_database_cut_mid_envelope_credits_each_of_its_payouts_exactly_once(
    settings: Settings, observer: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """An envelope spanning three batches: the first is committed, the second is waiting inside
    its transaction (on a wallet lock the test holds) when the worker's database connections
    are cut. Once the database is back, every payout of the envelope is credited exactly once,
    those committed before the cut included."""
    caplog.set_level(logging.INFO)
    proxy = await TcpProxy.in_front_of(settings.database.url)
    cut_off = database_through(proxy, settings, batch_size=2)
    await observer.execute(
        "INSERT INTO accounts (kind, owner, currency) VALUES "
        "('wallet', 'quin', 'COIN'), ('wallet', 'rae', 'COIN')"
    )
    events = [event("quin", 1), event("quin", 2), *(event("rae", n) for n in (3, 4, 5, 6))]

    async def first_batch_committed() -> bool:
        return await count(observer, "SELECT count(*) FROM payouts") == 2

    async def second_batch_waiting() -> bool:
        return await count(observer, WAITING_ON_A_LOCK) > 0

    async def all_credited() -> bool:
        credited = "SELECT count(*) FROM payouts WHERE status = 'credited'"
        return (
            await count(observer, credited) == len(events)
            and await queue_depth(
                settings.broker.urls[0], Topology.from_settings(settings.broker).work_queue
            )
            == 0
        )

    try:
        async with publisher_for(settings) as publisher, worker_running(cut_off):
            holding = observer.transaction()
            await holding.start()
            try:
                await observer.execute("SELECT 1 FROM accounts WHERE owner = 'rae' FOR UPDATE")
                await publisher.publish_envelope(events)
                await wait_until(first_batch_committed, "the envelope's first batch committed")
                await wait_until(second_batch_waiting, "the next batch waiting on the wallet")
                await proxy.cut()
            finally:
                await holding.rollback()
            await proxy.restore()
            await wait_until(all_credited, "every payout of the envelope credited")
            await asyncio.sleep(1)  # time for a copy credited twice to show
    finally:
        await proxy.close()
    assert await count(observer, "SELECT count(*) FROM payouts") == len(events)
    assert await count(observer, "SELECT count(*) FROM ledger_entries") == 2 * len(events)
    balances = await observer.fetch("SELECT owner, balance FROM accounts WHERE kind = 'wallet'")
    assert {row["owner"]: row["balance"] for row in balances} == {
        "quin": Decimal(1 + 2),
        "rae": Decimal(3 + 4 + 5 + 6),
    }
    await assert_books_balance(observer)
    retried = {"transient failure, retrying in place", "delivery failed; retrying later"}
    assert retried & {record.getMessage() for record in caplog.records}, "the cut hit no batch"
