"""The broker's own limits on this machine, with plain aio-pika: publishing with confirms at a
given concurrency, and a plain consumer draining a pre-filled queue, on the queue type the
pipeline uses (quorum), with messages the size of a payout event."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aio_pika

if TYPE_CHECKING:
    from pamqp.common import FieldTable

__all__ = ["consume_rate", "fill", "prefill", "publish_rate"]

QUORUM: FieldTable = {"x-queue-type": "quorum"}


async def _fresh_queue(channel: aio_pika.abc.AbstractChannel, name: str) -> None:
    await channel.queue_delete(name)
    await channel.declare_queue(name, durable=True, arguments=QUORUM)


async def publish_rate(
    url: str, queue: str, body: bytes, concurrency: int, seconds: float
) -> float:
    """Messages per second, each persistent and confirmed, `concurrency` in flight at a time."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await _fresh_queue(channel, queue)
        deadline = time.monotonic() + seconds
        published = 0

        async def publisher() -> None:
            nonlocal published
            while time.monotonic() < deadline:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, routing_key=queue)
                published += 1

        started = time.monotonic()
        await asyncio.gather(*(publisher() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        await channel.queue_delete(queue)
    return published / elapsed


async def fill(
    url: str,
    queue: str,
    bodies: list[bytes],
    concurrency: int = 64,
    message_type: str | None = None,
) -> None:
    """Publish `bodies` to `queue` (declared beforehand), confirmed, `concurrency` at a time,
    with the AMQP type `message_type` (an envelope's) if given."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        cursor = iter(bodies)

        async def publisher() -> None:
            for body in cursor:
                message = aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=message_type
                )
                await exchange.publish(message, routing_key=queue)

        await asyncio.gather(*(publisher() for _ in range(concurrency)))


async def prefill(url: str, queue: str, body: bytes, count: int) -> None:
    """A fresh quorum queue `queue` holding `count` copies of `body`, for `consume_rate`."""
    connection = await aio_pika.connect(url)
    async with connection:
        await _fresh_queue(await connection.channel(), queue)
    await fill(url, queue, [body] * count)


async def consume_rate(url: str, queue: str, count: int, prefetch: int) -> float:
    """Messages per second a plain consumer acks, one by one, draining `count` messages from
    the queue `prefill` filled; the queue is deleted afterwards."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        done = asyncio.Event()
        consumed = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed == count:
                done.set()

        declared = await channel.get_queue(queue)
        started = time.monotonic()
        tag = await declared.consume(on_message)
        await done.wait()
        elapsed = time.monotonic() - started
        await declared.cancel(tag)
        await channel.queue_delete(queue)
    return count / elapsed
