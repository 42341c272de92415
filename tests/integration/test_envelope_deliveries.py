"""A delivery's events against a real channel: the delivery is acked once its last event is
finished, never past an envelope still waiting, and returned at most once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aio_pika

from broker.deliveries import OpenDeliveries
from broker.publisher import persistent_message
from schema.envelopes import ENVELOPE_TYPE, encode_envelope
from schema.events import encode_event
from tests.factories import payout_event
from tests.integration.test_open_deliveries import take
from workers.envelope_deliveries import EventDeliveries

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

    from tests.services import Services


async def publish(channel: AbstractChannel, queue: AbstractQueue, events: int) -> None:
    """One envelope of `events` payouts, or a single-event message for 1."""
    if events == 1:
        message = persistent_message(encode_event(payout_event()))
    else:
        enclosed = [payout_event() for _ in range(events)]
        message = persistent_message(encode_envelope(enclosed), type=ENVELOPE_TYPE)
    await channel.default_exchange.publish(message, queue.name)


async def test_a_delivery_is_acked_once_its_last_event_is_finished(services: Services) -> None:
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for events in (1, 3, 1):
            await publish(channel, queue, events)
        deliveries = EventDeliveries(OpenDeliveries())
        single, envelope, later = [
            deliveries.received(m) for m in await take(channel, queue.name, 3)
        ]
        assert [len(parts) for parts in (single, envelope, later)] == [1, 3, 1]

        await deliveries.finished([*single, *envelope[:2]])
        assert not deliveries.is_open(single[0])
        assert deliveries.is_open(envelope[2]), "acked with events still waiting"
        await deliveries.finished(later)  # alone: a multiple ack would settle the envelope too
        assert not deliveries.is_open(later[0])
        assert deliveries.is_open(envelope[0])
        await deliveries.finished(envelope[2:])
        assert not deliveries.is_open(envelope[0])
        await deliveries.returned(envelope[0])  # settled already: nothing to return

        await channel.close()  # would requeue anything left unsettled
        reopened = await connection.channel()
        assert await (await reopened.get_queue(queue.name)).get(fail=False) is None


async def test_a_returned_delivery_comes_back_whole_and_is_settled_no_more(
    services: Services,
) -> None:
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await publish(channel, queue, 3)
        deliveries = EventDeliveries(OpenDeliveries())
        (message,) = await take(channel, queue.name, 1)
        first, second, third = deliveries.received(message)

        await deliveries.finished([first])
        await deliveries.returned(second)
        await deliveries.returned(third)
        await deliveries.finished([third])
        assert not deliveries.is_open(first)

        again = await (await channel.get_queue(queue.name)).get(no_ack=True, timeout=5)
        assert (again.body, again.redelivered) == (message.body, True)
        assert not channel.is_closed, "a second settle of one delivery closes the channel"
