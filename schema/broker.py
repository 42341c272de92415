"""Connecting to RabbitMQ the same way from both sides: robust, named, and patient at start-up."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aio_pika

from schema.logs import log, redacted_url

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from schema.settings import BrokerSettings

__all__ = ["connect_when_available"]

logger = logging.getLogger(__name__)


async def connect_when_available(
    settings: BrokerSettings, connection_name: str
) -> AbstractRobustConnection:
    """Retry the first connection until it succeeds; aio-pika handles every later reconnect."""
    while True:
        try:
            return await aio_pika.connect_robust(
                settings.url,
                reconnect_interval=settings.reconnect_interval_seconds,
                client_properties={"connection_name": connection_name},
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            log(
                logger,
                logging.WARNING,
                "broker unreachable, retrying",
                broker=redacted_url(settings.url),
                error=repr(error),
                retry_in_seconds=settings.reconnect_interval_seconds,
            )
            await asyncio.sleep(settings.reconnect_interval_seconds)
