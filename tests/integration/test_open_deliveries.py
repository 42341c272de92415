"""The worker's record of open deliveries against a real channel: a single `multiple` ack settles
exactly the batch it was computed for, and a reopened channel starts a record of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aio_pika

from broker.deliveries import Delivery, OpenDeliveries

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel

    from tests.services import Services


async def take(channel: AbstractChannel, queue: str, count: int) -> list[Delivery]:
    """`count` deliveries, as the worker's consumer sees them."""
    underlay = await channel.get_underlay_channel()
    return [Delivery(await underlay.basic_get(queue, no_ack=False)) for _ in range(count)]


async def test_one_ack_settles_exactly_the_oldest_batch_and_a_new_channel_starts_afresh(
    services: Services,
) -> None:
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)  # gone with the connection
        for n in range(6):
            await channel.default_exchange.publish(aio_pika.Message(b"%d" % n), queue.name)
        deliveries = OpenDeliveries()
        held = await take(channel, queue.name, 6)
        for message in held:
            deliveries.received(message)
        older, newer = held[:3], held[3:]

        assert deliveries.single_ack(newer) is None, "would settle the older batch too"
        last = deliveries.single_ack(older)
        assert last is older[-1]
        await last.ack(multiple=True)
        for message in older:
            deliveries.settled(message)
        assert not deliveries.is_open(older[0])
        assert deliveries.is_open(newer[0])
        assert deliveries.single_ack(newer) is newer[-1]

        await channel.close()  # the broker requeues what this channel still held
        assert not deliveries.is_open(newer[0])
        assert deliveries.single_ack(newer) is None

        reopened = await connection.channel()
        again = await take(reopened, queue.name, 3)
        # What the single ack settled is gone; what it did not is delivered again, tags anew.
        assert sorted(message.body for message in again) == [b"3", b"4", b"5"]
        assert [message.delivery_tag for message in again] == [1, 2, 3]
        for message in again:
            deliveries.received(message)
        assert deliveries.single_ack(again) is again[-1]
        assert deliveries.single_ack([newer[0], again[0]]) is None
