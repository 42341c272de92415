"""The worker's consumer on the work queue, registered on the channel underneath aio-pika's.

aio-pika's `Queue.consume` costs a wrapper object and a second task per delivery
(docs/benchmarks.md); registered with aiormq directly, a delivery costs one task and a `Delivery`
view. aio-pika then no longer knows of the consumer, so this registers it again, under the same
tag, on every channel aio-pika reopens and after a broker cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, cast

import aio_pika

from broker.declaration import declare_dead_letter_queue, declare_replicated
from broker.deliveries import Delivery
from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiormq
    import aiormq.abc
    from aio_pika.abc import AbstractChannel, AbstractRobustChannel
    from pamqp.commands import Basic

    from broker.connection import RobustConnection
    from schema.topology import Topology

__all__ = ["Subscription", "subscribe"]

logger = logging.getLogger(__name__)


class Subscription:
    """Deliveries of `queue` on `channel` to `on_delivery`, from `start()` until `cancel()`.

    After `cancel()` begins, nothing reaches `on_delivery`: a delivery already on its way is
    returned to the queue, and a re-consume already under way is waited for, then cancelled.
    """

    def __init__(
        self, channel: AbstractRobustChannel, queue: str, on_delivery: Callable[[Delivery], None]
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._on_delivery = on_delivery
        # Chosen here, not by the broker: a cancel that arrives before `basic_consume` returns
        # must already be recognised as ours.
        self._tag = f"payouts-worker.{uuid.uuid4().hex}"
        # The channel the consumer was last registered on.
        self._consuming_on: aiormq.Channel | None = None
        self._stopped = False
        # One registration or cancellation at a time: a reopen and a broker cancel may both
        # want to consume again, and `cancel()` must wait for one under way.
        self._registering = asyncio.Lock()
        self._resuming: asyncio.Task[None] | None = None  # held: the loop keeps weak references

    @property
    def active(self) -> bool:
        """A consumer is registered on an open channel, and the broker has not cancelled it."""
        channel = self._consuming_on
        return channel is not None and not channel.is_closed and self._tag in channel.consumers

    async def start(self) -> None:
        self._channel.reopen_callbacks.add(self._resume)
        async with self._registering:
            await self._consume()

    async def cancel(self) -> None:
        """Stop deliveries. What was delivered before stays the caller's to settle."""
        self._stopped = True
        self._channel.reopen_callbacks.discard(self._resume)
        async with self._registering:
            channel, self._consuming_on = self._consuming_on, None
            if channel is not None and not channel.is_closed and self._tag in channel.consumers:
                await channel.basic_cancel(self._tag)

    async def _consume(self) -> None:
        # aiormq's own channel, whose `consumers` says whether ours is still registered.
        channel = cast("aiormq.Channel", await self._channel.get_underlay_channel())
        channel.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
        await channel.basic_consume(self._queue, self._deliver, consumer_tag=self._tag)
        self._consuming_on = channel

    async def _deliver(self, message: aiormq.abc.DeliveredMessage) -> None:
        delivery = Delivery(message)
        if not self._stopped:
            self._on_delivery(delivery)
            return
        # Sent before the broker saw our cancel: back to the queue, for another consumer.
        with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            await delivery.nack(requeue=True)

    async def _resume(self, _channel: AbstractChannel | None = None) -> None:
        """On a reopened channel (the old one's consumer went with it), or after a cancel."""
        async with self._registering:
            if self._stopped or self.active:
                return
            try:
                await self._consume()
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
                # Reported by `active`: the worker's watchdog exits for a restart if it lasts.
                log(logger, logging.WARNING, "could not consume again", error=repr(error))
            else:
                log(logger, logging.INFO, "consuming again", queue=self._queue)

    def _cancelled_by_broker(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag or self._stopped:
            return
        log(logger, logging.WARNING, "the broker cancelled the consumer", queue=self._queue)
        self._resuming = asyncio.get_running_loop().create_task(self._resume())


async def subscribe(
    connection: RobustConnection,
    topology: Topology,
    prefetch: int,
    on_delivery: Callable[[Delivery], None],
) -> Subscription:
    """Declare `topology` on a channel of its own with `prefetch` deliveries in flight, and
    deliver its work queue's messages to `on_delivery`."""
    await declare_dead_letter_queue(connection, topology)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = (await declare_replicated(channel, topology)).work_queue
    subscription = Subscription(channel, queue.name, on_delivery)
    await subscription.start()
    return subscription
