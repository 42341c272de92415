"""Queue depths sampled from the real RabbitMQ for payouts_queue_messages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aio_pika
from prometheus_client import generate_latest

from broker.connection import connect_when_available
from schema.topology import Topology
from tests.factories import payout_event
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from workers.queue_depths import sample_queue_depths

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from broker.publisher import ConfirmedPublisher
    from schema.settings import BrokerSettings
    from tests.services import Services

INTERVAL_SECONDS = 0.1


def sampled_depth(queue: str) -> float:
    return sample_value(generate_latest().decode(), "payouts_queue_messages", queue=queue)


@contextlib.asynccontextmanager
async def sampling(settings: BrokerSettings) -> AsyncIterator[None]:
    connection = await connect_when_available(settings, "test")
    task = asyncio.create_task(
        sample_queue_depths(connection, Topology.from_settings(settings), INTERVAL_SECONDS)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await connection.close()


async def test_each_queue_a_payout_may_wait_in_gets_its_depth(
    broker_settings: BrokerSettings, publisher: ConfirmedPublisher
) -> None:
    topology = Topology.from_settings(broker_settings)
    for _ in range(3):
        await publisher.publish_event(payout_event())
    async with sampling(broker_settings):

        async def work_queue_sampled() -> bool:
            return sampled_depth(topology.work_queue) == 3

        await wait_until(work_queue_sampled, "the work queue's depth")
    exposition = generate_latest().decode()
    for queue in (*topology.pending_queues[1:], topology.dead_letter_queue):
        assert f'queue="{queue}"' in exposition
        assert sampled_depth(queue) == 0


async def test_the_depths_follow_the_queues_from_one_sample_to_the_next(
    broker_settings: BrokerSettings, publisher: ConfirmedPublisher
) -> None:
    work_queue = Topology.from_settings(broker_settings).work_queue
    async with sampling(broker_settings):
        for expected in (1, 2, 3):
            await publisher.publish_event(payout_event())

            async def caught_up(expected: int = expected) -> bool:
                return sampled_depth(work_queue) == expected

            await wait_until(caught_up, f"a depth of {expected}", 10)


async def test_the_depths_keep_following_after_a_sample_failed(
    broker_settings: BrokerSettings, publisher: ConfirmedPublisher, services: Services
) -> None:
    """A queue gone missing fails its passive declare and closes the channel it was read on;
    the queues read before it keep being sampled."""
    topology = Topology.from_settings(broker_settings)
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        await (await connection.channel()).queue_delete(topology.dead_letter_queue)
    async with sampling(broker_settings):
        for expected in (1, 2):
            await publisher.publish_event(payout_event())

            async def caught_up(expected: int = expected) -> bool:
                return sampled_depth(topology.work_queue) == expected

            await wait_until(caught_up, f"a depth of {expected}", 10)
