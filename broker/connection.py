"""Connections to RabbitMQ: the patient, reconnecting one a long-running process holds, and the
plain one a one-shot command opens. Every failure to reach the broker becomes BrokerUnavailable."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from schema.errors import BrokerUnavailable
from schema.logs import log, redacted_url

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from schema.settings import BrokerSettings

__all__ = [
    "BROKER_ERRORS",
    "CLOSE_TIMEOUT_SECONDS",
    "RobustConnection",
    "connect_once",
    "connect_when_available",
    "connection_name",
]

logger = logging.getLogger(__name__)

# What a broker operation raises when the broker, the connection or the channel is away: aiormq
# raises RuntimeError and ConnectionError subclasses on a closed channel, besides AMQP errors.
BROKER_ERRORS = (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError)
# The reconnecting connection a long-running process holds, as the other layers name it.
RobustConnection = AbstractRobustConnection
# How long a connection attempt nobody waits for any more may take to end before it is cut off.
CLOSE_TIMEOUT_SECONDS = 5.0


def connection_name(role: str, settings: BrokerSettings) -> str:
    """Shown by `rabbitmqctl list_connections`, so an operator can tell processes apart."""
    return f"payouts-{role} {settings.namespace} pid={os.getpid()}"


async def connect_when_available(settings: BrokerSettings, role: str) -> RobustConnection:
    """Retry the first connection until it succeeds; aio-pika handles every later reconnect."""
    while True:
        attempt: asyncio.Future[RobustConnection] = asyncio.ensure_future(
            aio_pika.connect_robust(
                settings.url,
                reconnect_interval=settings.reconnect_interval_seconds,
                client_properties={"connection_name": connection_name(role, settings)},
            )
        )
        try:
            # Shielded: a handshake cancelled halfway leaves aiormq's reader and heartbeat tasks
            # behind, pending until the loop closes. A caller that gives up waits for it instead.
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            await _close_when_connected(attempt)
            raise
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


async def connect_once(
    settings: BrokerSettings, role: str, timeout_seconds: float
) -> AbstractConnection:
    """One attempt, for a command: if the connection drops later, the command ends (run it again)
    instead of reconnecting behind the operator's back."""
    try:
        return await aio_pika.connect(
            settings.url,
            timeout=timeout_seconds,
            client_properties={"connection_name": connection_name(role, settings)},
        )
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
        raise BrokerUnavailable(f"RabbitMQ at {redacted_url(settings.url)}: {error!r}") from None


async def _close_when_connected(attempt: asyncio.Future[RobustConnection]) -> None:
    """Let a connection attempt nobody waits for any more end, within CLOSE_TIMEOUT_SECONDS, and
    close the connection it opened."""
    done, _ = await asyncio.wait([attempt], timeout=CLOSE_TIMEOUT_SECONDS)
    if not done:
        attempt.cancel()
        return
    if attempt.cancelled() or attempt.exception() is not None:
        return
    await attempt.result().close()
