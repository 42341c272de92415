"""Publishing payout events: persistent, mandatory, confirmed by the broker, under a deadline."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aio_pika
from pamqp.commands import Basic

from schema.broker import connect_when_available
from schema.events import CONTRACT_VERSION, PayoutEvent, encode_event
from schema.logs import log
from schema.topology import ROUTING_KEY, Topology, declare

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractRobustConnection

    from schema.settings import BrokerSettings

__all__ = ["BrokerUnavailable", "Publisher"]

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The event was not confirmed by the broker; the provider must be told to try again."""


class Publisher:
    """Owns the ingress's broker connection; connects in the background so start-up never waits."""

    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._topology = Topology(settings.namespace)
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect(), name="broker-connect")

    async def _connect(self) -> None:
        self._connection = await connect_when_available(self._settings, "payouts-ingress")
        # Confirms plus on_return_raises: an unroutable or refused message raises instead of
        # vanishing (aio-pika #78, #106).
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await declare(channel, self._topology)
        log(logger, logging.INFO, "ingress connected to broker", exchange=self._topology.exchange)

    @property
    def ready(self) -> bool:
        return (
            self._exchange is not None
            and self._connection is not None
            and not self._connection.is_closed
        )

    async def publish(self, event: PayoutEvent) -> None:
        if self._exchange is None:
            raise BrokerUnavailable("not connected to the broker yet")
        message = aio_pika.Message(
            encode_event(event),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=str(event.event_id),
            timestamp=event.received_at,
            type=f"payout.v{CONTRACT_VERSION}",
            headers={"provider_instance": event.provider_instance},
        )
        try:
            # publish(timeout=...) does not cover waiting for a reconnect: bound the whole call.
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                confirmation = await self._exchange.publish(
                    message, routing_key=ROUTING_KEY, mandatory=True
                )
        except TimeoutError:
            raise BrokerUnavailable("the broker did not confirm in time") from None
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
            raise BrokerUnavailable(f"publish failed: {error!r}") from None
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerUnavailable(f"the broker did not acknowledge: {confirmation!r}")

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None:
            await self._connection.close()
