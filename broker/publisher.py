"""Publishing that waits for the broker's confirm, on a connection of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from pamqp.commands import Basic

from broker.connection import BROKER_ERRORS, CLOSE_TIMEOUT_SECONDS, connect_when_available
from broker.declaration import declare_dead_letter_queue, declare_replicated
from schema.envelopes import ENVELOPE_TYPE, encode_envelope
from schema.errors import BrokerUnavailable
from schema.events import EVENT_TYPE, PayoutEvent, encode_event
from schema.logs import log
from schema.topology import ROUTING_KEY, Topology

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aio_pika.abc import AbstractChannel, AbstractRobustConnection

    from schema.settings import BrokerSettings

__all__ = ["ConfirmedPublisher", "OutgoingMessage", "event_properties", "persistent_message"]

logger = logging.getLogger(__name__)

# A message to publish, as the other layers name it.
OutgoingMessage = aio_pika.Message
# A nack gets the publisher a new channel, at most this often: a channel opened just as a
# cluster node died was seen to nack every publish for 20 s and more, where a new channel did not
# (docs/high-availability.md). While a queue refuses everything (full), new channels stay rare.
NACK_REOPEN_INTERVAL_SECONDS = 1.0


def persistent_message(body: bytes, **properties: Any) -> OutgoingMessage:
    """Every message we publish carries money or its history: it must survive a broker restart,
    and aio-pika's default is transient."""
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties)


def event_properties(event: PayoutEvent, reply_to: str | None = None) -> Basic.Properties:
    """An event's AMQP properties, persistent like every message we publish; `reply_to` names
    where its outcome is awaited. Built directly: an aio_pika.Message per callback cost ten times
    as much (docs/benchmarks.md, *Changed between the 17:02 and 20:56 runs*)."""
    return _json_properties(
        message_id=str(event.event_id),
        timestamp=event.received_at,
        message_type=EVENT_TYPE,
        headers={"provider_instance": event.provider_instance},
        reply_to=reply_to,
    )


def _json_properties(**properties: Any) -> Basic.Properties:
    """The properties of a JSON payout message, persistent like every message we publish."""
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )


class ConfirmedPublisher:
    """A publishing connection of its own, opened in the background so start-up never waits."""

    def __init__(self, settings: BrokerSettings, role: str) -> None:
        self._settings = settings
        self._role = role
        self.topology = Topology.from_settings(settings)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: frozenset[str] = frozenset()
        self._connecting: asyncio.Task[None] | None = None
        self._reopened_at = -math.inf
        self._reopening: asyncio.Task[None] | None = None  # held: the loop keeps weak references
        self._retiring: set[asyncio.Task[None]] = set()  # nacked channels, closed a while later

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect(), name=f"{self._role}-publisher")

    async def _connect(self) -> None:
        """Until the topology is declared: a failure after connecting must not leave us stuck."""
        while True:
            connection = await connect_when_available(self._settings, self._role)
            try:
                await declare_dead_letter_queue(connection, self.topology)
                self._channel = await self._open_channel(connection)
            except asyncio.CancelledError:
                await connection.close()  # closed while declaring: nobody will use it
                raise
            except (TimeoutError, aio_pika.exceptions.AMQPError, OSError) as error:
                log(
                    logger,
                    logging.ERROR,
                    "cannot declare the broker topology, retrying",
                    error=repr(error),
                    retry_in_seconds=self._settings.reconnect_interval_seconds,
                )
                await connection.close()
                await asyncio.sleep(self._settings.reconnect_interval_seconds)
                continue
            self._connection = connection
            log(
                logger,
                logging.INFO,
                "publisher connected",
                role=self._role,
                exchange=self.topology.exchange,
            )
            return

    async def _open_channel(self, connection: AbstractRobustConnection) -> AbstractChannel:
        # Confirms plus on_return_raises: an unroutable or refused message raises instead of
        # vanishing (aio-pika #78, #106).
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchanges = frozenset((await declare_replicated(channel, self.topology)).exchanges)
        return channel

    async def wait_ready(self) -> None:
        """Until connected and declared, or BrokerUnavailable after the publish timeout."""
        if self._connecting is None:
            raise BrokerUnavailable("the publisher was not started")
        try:
            await asyncio.wait_for(
                asyncio.shield(self._connecting), self._settings.publish_timeout_seconds
            )
        except TimeoutError:
            raise BrokerUnavailable("could not connect to the broker in time") from None

    @property
    def ready(self) -> bool:
        """Connected with an open channel now; False while a robust connection is reconnecting."""
        return (
            self._connection is not None
            and self._connection.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish_event(self, event: PayoutEvent, *, reply_to: str | None = None) -> None:
        """Publish `event`; `reply_to` is the channel a worker reports its outcome on."""
        await self._publish(
            encode_event(event),
            event_properties(event, reply_to),
            self.topology.exchange,
            ROUTING_KEY,
        )

    async def publish_envelope(
        self, events: Sequence[PayoutEvent], *, reply_to: str | None = None
    ) -> None:
        """`events` in one message (`schema/envelopes.py`), confirmed as one; `reply_to` is the
        channel the outcomes of those that wait for one are reported on."""
        properties = _json_properties(
            message_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
            message_type=ENVELOPE_TYPE,
            reply_to=reply_to,
        )
        await self._publish(
            encode_envelope(events), properties, self.topology.exchange, ROUTING_KEY
        )

    async def publish(
        self,
        message: OutgoingMessage,
        *,
        exchange: str | None = None,
        routing_key: str = ROUTING_KEY,
    ) -> None:
        """Publish to `exchange` (default: the work exchange) and wait for the broker's ack."""
        await self._publish(
            message.body, message.properties, exchange or self.topology.exchange, routing_key
        )

    async def _publish(
        self, body: bytes, properties: Basic.Properties, exchange: str, routing_key: str
    ) -> None:
        if self._channel is None or exchange not in self._exchanges:
            raise BrokerUnavailable("not connected to the broker yet")
        if self._channel.is_closed:
            # At once, rather than after the timeout: the provider's retry is the remedy.
            raise BrokerUnavailable("the channel to the broker is closed; reconnecting")
        publishing_on = self._channel
        try:
            # The timeout bounds the whole call, including a wait for a reconnecting channel.
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                channel = await self._channel.get_underlay_channel()
                confirmation = await channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except TimeoutError:
            raise BrokerUnavailable("the broker did not confirm in time") from None
        except BROKER_ERRORS as error:
            nacked = isinstance(error, aiormq.exceptions.DeliveryError) and isinstance(
                error.frame, Basic.Nack
            )
            if nacked:
                self._reopen_after_nack(publishing_on)
            raise BrokerUnavailable(f"publish failed: {error!r}") from None
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerUnavailable(f"the broker did not acknowledge: {confirmation!r}")

    def _reopen_after_nack(self, nacked: AbstractChannel) -> None:
        now = time.monotonic()
        reopening = self._reopening is not None and not self._reopening.done()
        if reopening or now - self._reopened_at < NACK_REOPEN_INTERVAL_SECONDS:
            return
        self._reopened_at = now
        log(logger, logging.WARNING, "the broker refused a publish; opening a new channel")
        self._reopening = asyncio.create_task(self._replace_channel(nacked))

    async def _replace_channel(self, nacked: AbstractChannel) -> None:
        """Publish on a new channel, then close the nacked one once the publishes still in flight
        on it have had their publish timeout: no callback meets a closed channel meanwhile."""
        if self._connection is None or self._channel is not nacked:
            return
        try:
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                self._channel = await self._open_channel(self._connection)
        except (TimeoutError, *BROKER_ERRORS) as error:
            # The nacked channel stays; the next nack tries again.
            log(logger, logging.WARNING, "could not open a new channel", error=repr(error))
            return
        # Apart from the reopening: a new channel that nacks too (seen just after a node died)
        # gets its own replacement a NACK_REOPEN_INTERVAL_SECONDS later, not once this ends.
        retiring = asyncio.create_task(self._close_later(nacked))
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)

    async def _close_later(self, nacked: AbstractChannel) -> None:
        await asyncio.sleep(self._settings.publish_timeout_seconds)
        with contextlib.suppress(*BROKER_ERRORS):
            await nacked.close()

    async def close(self) -> None:
        for task in (self._reopening, *self._retiring):
            if task is not None:
                task.cancel()  # the connection's close closes every channel
        if self._connecting is not None and not self._connecting.done():
            # Awaited: a connection still in its handshake is let finish, then closed.
            self._connecting.cancel()
            await asyncio.wait([self._connecting], timeout=2 * CLOSE_TIMEOUT_SECONDS)
        if self._connection is not None:
            await self._connection.close()
