"""Moving failed deliveries against the real RabbitMQ and Postgres: into a retry tier, into the
dead-letter queue, or back to the work queue, and never a copy beside a live original."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aio_pika
import pytest

from broker.deliveries import Delivery, OpenDeliveries
from broker.publisher import ConfirmedPublisher, persistent_message
from schema.events import encode_event
from schema.outcomes import new_reply_channel
from schema.topology import Topology
from tests.factories import payout_event
from tests.polling import wait_until
from tests.services import queue_depth
from workers.envelope_deliveries import DeliveredEvent, EventDeliveries
from workers.failures import ATTEMPTS, Failure, FailureKind
from workers.moves import MessageMover

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

    from schema.settings import BrokerSettings

TRANSIENT = Failure(FailureKind.TRANSIENT, "ConnectionDoesNotExistError", "connection lost")
POISON = Failure(FailureKind.POISON, "ContractError", "not a payout event")


@pytest.fixture
async def connection(broker_settings: BrokerSettings) -> AsyncIterator[AbstractConnection]:
    opened = await aio_pika.connect(broker_settings.urls[0])
    async with opened:
        yield opened


@pytest.fixture
async def channel(connection: AbstractConnection) -> AbstractChannel:
    """The test's own look at the queues, as the worker's consuming channel."""
    return await connection.channel()


@pytest.fixture
def topology(broker_settings: BrokerSettings) -> Topology:
    return Topology.from_settings(broker_settings)


@pytest.fixture
def deliveries() -> EventDeliveries:
    return EventDeliveries(OpenDeliveries())


@pytest.fixture
def mover(
    broker_settings: BrokerSettings,
    pool: asyncpg.Pool,
    publisher: ConfirmedPublisher,
    deliveries: EventDeliveries,
) -> MessageMover:
    return MessageMover(broker_settings, pool, publisher, deliveries)


async def delivered(
    channel: AbstractChannel, queue: str, deliveries: EventDeliveries
) -> DeliveredEvent:
    """The next message of `queue`, a single event, delivered unacked on `channel` and open in
    `deliveries`."""
    message = Delivery(await (await channel.get_underlay_channel()).basic_get(queue))
    (part,) = deliveries.received(message)
    return part


async def next_message(channel: AbstractChannel, queue: str) -> AbstractIncomingMessage:
    """The next message of `queue`, once there is one."""
    found: list[AbstractIncomingMessage] = []

    async def arrived() -> bool:
        message = await (await channel.get_queue(queue)).get(no_ack=True, fail=False)
        found.extend([message] if message is not None else [])
        return bool(found)

    await wait_until(arrived, f"a message in {queue}")
    return found[0]


async def test_a_failed_payout_waits_in_the_first_tier_then_returns_counted(
    broker_settings: BrokerSettings,
    topology: Topology,
    publisher: ConfirmedPublisher,
    channel: AbstractChannel,
    deliveries: EventDeliveries,
    mover: MessageMover,
) -> None:
    payout, reply_to = payout_event(report_outcome=True), new_reply_channel()
    await publisher.publish_event(payout, reply_to=reply_to)
    message = await delivered(channel, topology.work_queue, deliveries)
    await mover.retry_later(message, TRANSIENT)
    assert not deliveries.is_open(message)
    returned = await next_message(channel, topology.work_queue)
    assert (returned.body, returned.message_id) == (encode_event(payout), str(payout.event_id))
    assert returned.reply_to == reply_to  # its outcome may still be awaited
    assert returned.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert returned.headers[ATTEMPTS] == 1
    assert await queue_depth(broker_settings.urls[0], topology.retry_queue(1)) == 0


async def test_after_the_last_tier_a_payout_is_dead_lettered_and_recorded(
    broker_settings: BrokerSettings,
    topology: Topology,
    pool: asyncpg.Pool,
    publisher: ConfirmedPublisher,
    channel: AbstractChannel,
    deliveries: EventDeliveries,
    mover: MessageMover,
) -> None:
    payout = payout_event()
    tiers = len(broker_settings.retry_delays_seconds)
    await publisher.publish(
        persistent_message(
            encode_event(payout), headers={ATTEMPTS: tiers}, message_id=str(payout.event_id)
        )
    )
    message = await delivered(channel, topology.work_queue, deliveries)
    await mover.retry_later(message, TRANSIENT)
    dead = await next_message(channel, topology.dead_letter_queue)
    assert (dead.body, dead.headers[ATTEMPTS]) == (encode_event(payout), tiers + 1)
    async with pool.acquire() as conn:
        recorded = await conn.fetch("SELECT transaction_id, kind, attempts FROM dead_letters")
    assert [tuple(row) for row in recorded] == [(payout.transaction_id, "transient", tiers + 1)]
    assert await queue_depth(broker_settings.urls[0], topology.work_queue) == 0


async def test_a_copy_the_broker_will_not_take_returns_the_original_to_the_queue(
    broker_settings: BrokerSettings,
    topology: Topology,
    pool: asyncpg.Pool,
    publisher: ConfirmedPublisher,
    channel: AbstractChannel,
    deliveries: EventDeliveries,
) -> None:
    await publisher.publish(persistent_message(b"not json", message_id="poison"))
    message = await delivered(channel, topology.work_queue, deliveries)
    never_connected = ConfirmedPublisher(broker_settings, "never-started")
    await MessageMover(broker_settings, pool, never_connected, deliveries).dead_letter(
        message, POISON
    )
    assert not deliveries.is_open(message)
    returned = await next_message(channel, topology.work_queue)
    assert (returned.body, returned.redelivered) == (b"not json", True)
    assert await queue_depth(broker_settings.urls[0], topology.dead_letter_queue) == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_delivery_whose_channel_closed_is_left_to_the_broker(
    broker_settings: BrokerSettings,
    topology: Topology,
    publisher: ConfirmedPublisher,
    connection: AbstractConnection,
    channel: AbstractChannel,
    deliveries: EventDeliveries,
    mover: MessageMover,
) -> None:
    """The broker requeues what a closed channel held: a copy would be a second live message."""
    await publisher.publish(persistent_message(b"not json", message_id="poison"))
    closing = await connection.channel()
    message = await delivered(closing, topology.work_queue, deliveries)
    await closing.close()
    await mover.dead_letter(message, POISON)
    returned = await next_message(channel, topology.work_queue)
    assert returned.body == b"not json"
    assert await queue_depth(broker_settings.urls[0], topology.dead_letter_queue) == 0
