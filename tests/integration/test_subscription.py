"""The worker's consumer, registered beneath aio-pika, against a real broker: it keeps consuming
through what aio-pika restores (a channel the broker closed, a consumer the broker cancelled), and
stops when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

import aio_pika

from broker.subscription import Subscription
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiormq
    from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection

    from broker.deliveries import Delivery
    from tests.services import Services


class Received:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._acks: list[asyncio.Task[None]] = []  # held: the loop keeps only weak references

    def __call__(self, delivery: Delivery) -> None:
        self.bodies.append(delivery.body)
        # Settled in the background, as the worker does after its batch commits.
        self._acks.append(asyncio.get_running_loop().create_task(delivery.ack()))


@contextlib.asynccontextmanager
async def robust_channel(
    services: Services,
) -> AsyncIterator[tuple[AbstractRobustConnection, AbstractRobustChannel]]:
    connection = await aio_pika.connect_robust(services.rabbitmq_url)
    async with connection:
        yield connection, await connection.channel()


async def subscribed(
    channel: AbstractRobustChannel, services: Services
) -> tuple[AbstractQueue, Subscription, Received]:
    """A fresh queue, consumed. Exclusive: gone with the connection, and not with its last
    consumer, as an auto-delete queue is."""
    queue = await channel.declare_queue(f"{services.new_namespace()}.work", exclusive=True)
    received = Received()
    subscription = Subscription(channel, queue.name, received)
    await subscription.start()
    return queue, subscription, received


async def publish(channel: AbstractRobustChannel, queue: str, body: bytes) -> None:
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)


async def test_deliveries_flow_until_cancelled(services: Services) -> None:
    async with robust_channel(services) as (_, channel):
        queue, subscription, received = await subscribed(channel, services)
        assert subscription.active
        await publish(channel, queue.name, b"one")
        await wait_until(lambda: _has(received, [b"one"]), "the first delivery")

        await subscription.cancel()
        assert not subscription.active
        await publish(channel, queue.name, b"two")
        await asyncio.sleep(0.5)
        assert received.bodies == [b"one"], "delivered after the cancel"
        left = await queue.get(timeout=5)
        assert left.body == b"two", "not left in the queue"


async def test_consuming_resumes_on_a_channel_the_broker_closed(services: Services) -> None:
    async with robust_channel(services) as (_, channel):
        queue, subscription, received = await subscribed(channel, services)
        underlay = await channel.get_underlay_channel()
        # An ack of a tag never delivered: the broker closes the channel (406 PRECONDITION_FAILED).
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await underlay.basic_ack(9999)
        await wait_until(lambda: _is(underlay.is_closed), "the broker closes the channel")

        await wait_until(lambda: _is(subscription.active), "consuming on the reopened channel")
        assert await channel.get_underlay_channel() is not underlay
        await publish(channel, queue.name, b"after")
        await wait_until(lambda: _has(received, [b"after"]), "a delivery on the reopened channel")


async def test_consuming_resumes_after_the_broker_cancels_the_consumer(services: Services) -> None:
    """Deleting the queue cancels its consumers. aio-pika declares it again when it reopens the
    channel, and the consumer follows."""
    async with robust_channel(services) as (connection, channel):
        queue, subscription, received = await subscribed(channel, services)
        name = queue.name
        first = await channel.get_underlay_channel()

        await (await connection.channel()).queue_delete(name)
        # Consuming the deleted queue again fails, and the broker closes that channel.
        await wait_until(lambda: _is(first.is_closed), "the consume refused on the old channel")
        await wait_until(lambda: _is(subscription.active), "consuming the queue declared again", 15)
        await publish(channel, name, b"again")
        await wait_until(lambda: _has(received, [b"again"]), "a delivery from the new queue")


async def test_a_cancel_while_consuming_again_leaves_no_consumer(services: Services) -> None:
    """aio-pika starts every reopen callback at once, so a worker's shutdown can cancel the
    subscription while its own re-consume on the reopened channel is under way."""
    async with robust_channel(services) as (_, channel):
        cancelled = asyncio.Event()
        subscriptions: list[Subscription] = []

        async def cancel_on_reopen(_: object) -> None:
            await subscriptions[0].cancel()
            cancelled.set()

        channel.reopen_callbacks.add(cancel_on_reopen)  # called before the subscription's own
        queue, subscription, received = await subscribed(channel, services)
        subscriptions.append(subscription)
        underlay = await channel.get_underlay_channel()
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await underlay.basic_ack(9999)  # the broker closes the channel; aio-pika reopens it

        await wait_until(lambda: _is(cancelled.is_set()), "the cancel on reopen")
        await publish(channel, queue.name, b"after the cancel")
        await asyncio.sleep(0.5)  # had the re-consume gone on, the message would arrive now
        assert not subscription.active
        assert received.bodies == [], "delivered after the cancel"
        left = await queue.get(timeout=5)
        assert left.body == b"after the cancel", "not left in the queue"


async def test_not_active_once_its_channel_no_longer_holds_the_consumer(
    services: Services,
) -> None:
    """What the channel holds, not what the subscription last did: a broker cancel that arrives
    while a consume is still being confirmed leaves the subscription's own record behind."""
    async with robust_channel(services) as (_, channel):
        _, subscription, _ = await subscribed(channel, services)
        underlay = cast("aiormq.Channel", await channel.get_underlay_channel())
        (tag,) = underlay.consumers
        await underlay.basic_cancel(tag)
        assert not subscription.active


async def _has(received: Received, bodies: list[bytes]) -> bool:
    return received.bodies == bodies


async def _is(value: bool) -> bool:
    return value
