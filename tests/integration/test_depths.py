"""Reading a queue's depth from the real RabbitMQ, afresh each time, through failed reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from broker.connection import BROKER_ERRORS, connect_when_available
from broker.depths import QueueDepths
from schema.topology import Topology
from tests.factories import payout_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from broker.publisher import ConfirmedPublisher
    from schema.settings import BrokerSettings


@pytest.fixture
async def depths(broker_settings: BrokerSettings) -> AsyncIterator[QueueDepths]:
    connection = await connect_when_available(broker_settings, "test")
    try:
        yield QueueDepths(connection)
    finally:
        await connection.close()


async def test_each_read_asks_the_broker_again(
    broker_settings: BrokerSettings, publisher: ConfirmedPublisher, depths: QueueDepths
) -> None:
    work_queue = Topology.from_settings(broker_settings).work_queue
    seen = []
    for _ in range(3):
        await publisher.publish_event(payout_event())
        seen.append(await depths.read(work_queue))
    assert seen == [1, 2, 3]


async def test_a_missing_queue_fails_its_read_and_not_the_next(
    broker_settings: BrokerSettings, publisher: ConfirmedPublisher, depths: QueueDepths
) -> None:
    work_queue = Topology.from_settings(broker_settings).work_queue
    with pytest.raises(BROKER_ERRORS):
        await depths.read(f"{broker_settings.namespace}.no-such-queue")
    await publisher.publish_event(payout_event())
    assert await depths.read(work_queue) == 1
