"""Queue depths sampled from the real RabbitMQ for payouts_queue_messages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

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
