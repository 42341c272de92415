"""Connections to RabbitMQ: the patient, reconnecting one a long-running process holds, and the
plain one a one-shot command opens. Both know every node of the cluster; every failure to reach
the broker becomes BrokerUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from broker.metrics import NODE_CONNECTED, RECONNECTS
from schema.errors import BrokerUnavailable
from schema.logs import log, redacted_url
from schema.settings import NodeOrder

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from schema.settings import BrokerSettings

__all__ = [
    "BROKER_ERRORS",
    "CLOSE_TIMEOUT_SECONDS",
    "NodeConnection",
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
# How long restoring the channels (declarations, bindings, consumers) may take on a new
# connection before the node counts as unreachable. A node that has just lost a partner can
# hold a declaration forever: in the partition run, a queue.bind on a majority node, sent as the
# minority paused, never got its answer (6 minutes), and the ingress published nothing meanwhile.
RESTORE_TIMEOUT_SECONDS = 10.0


def connection_name(role: str, settings: BrokerSettings) -> str:
    """Shown by `rabbitmqctl list_connections`, so an operator can tell processes apart."""
    return f"payouts-{role} {settings.namespace} pid={os.getpid()}"


class NodeConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection (channels reopened, their queues, exchanges and consumers
    restored, reconnect callbacks run), moved to the next node each time a connection is lost or
    an attempt fails: aio-pika itself keeps the one URL it was given forever.

    aio-pika 10 reads `self.url` on every attempt and reports a failed attempt, like a lost
    connection, through `_on_connection_close`; that is where the node and the wait change.
    """

    def __init__(self, settings: BrokerSettings, role: str) -> None:
        nodes = list(settings.urls)
        if settings.node_order is NodeOrder.SHUFFLED:
            random.shuffle(nodes)
        self._nodes = nodes
        self._node_index = 0
        self._role = role
        self._first_interval = settings.reconnect_interval_seconds
        self._max_interval = settings.reconnect_max_interval_seconds
        self._failures = 0  # attempts failed in a row
        # Connected with every channel restored: set only once `_on_connected` has finished.
        self._holding = False
        # Clear while a handshake is known to be under way (the first one, and the one right
        # after a loss): cutting one off halfway leaves aiormq's tasks pending.
        self.attempt_over = asyncio.Event()
        super().__init__(
            URL(nodes[0]),
            reconnect_interval=self._first_interval,
            # Retry the first connection too, over every node, rather than fail at the first.
            fail_fast=False,
            client_properties={"connection_name": connection_name(role, settings)},
        )

    @property
    def node(self) -> str:
        """The node connected to, or tried next, as logs and metrics name it."""
        return redacted_url(self._nodes[self._node_index])

    async def _on_connected(self) -> None:
        try:
            # Channels restored first: a failure there is a failure, and so is a hang.
            async with asyncio.timeout(RESTORE_TIMEOUT_SECONDS):
                await super()._on_connected()
        except TimeoutError:
            # Closed, the attempt is reported as failed (`_on_connection_close`): the next node.
            stuck = BrokerUnavailable(
                f"channels not restored within {RESTORE_TIMEOUT_SECONDS} s on {self.node}"
            )
            if self.transport is not None:
                await self.transport.connection.close(stuck)
            raise stuck from None
        self._failures = 0
        self.reconnect_interval = self._first_interval
        self._holding = True
        self.attempt_over.set()
        NODE_CONNECTED.labels(self._role, self.node).set(1)
        if self.connection_attempt > 1:
            RECONNECTS.labels(self._role, self.node).inc()
        log(logger, logging.INFO, "connected to the broker", role=self._role, node=self.node)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        was_connected, self._holding = self._holding, False
        if was_connected:
            NODE_CONNECTED.labels(self._role, self.node).set(0)
        if self._close_called or self.is_closed:
            await super()._on_connection_close(closing)
            return
        error = closing.exception() if not closing.cancelled() else None
        if was_connected:
            # The next node at once: aio-pika's loop tries again as soon as this returns.
            message = "lost the broker node, retrying on the next one"
            self.attempt_over.clear()
        else:
            self.attempt_over.set()
            self._failures += 1
            message = "broker node unreachable, retrying on the next one"
            self.reconnect_interval = min(
                self._max_interval, self._first_interval * 2 ** (self._failures - 1)
            )
        log(
            logger,
            logging.WARNING,
            message,
            role=self._role,
            node=self.node,
            error=repr(error),
            retry_in_seconds=0 if was_connected else self.reconnect_interval,
        )
        self._node_index = (self._node_index + 1) % len(self._nodes)
        self.url = URL(self._nodes[self._node_index])
        await super()._on_connection_close(closing)


async def connect_when_available(settings: BrokerSettings, role: str) -> NodeConnection:
    """Connected to one of the nodes, trying them until one answers; the connection then moves
    between them by itself."""
    connection = NodeConnection(settings, role)
    attempt = asyncio.ensure_future(connection.connect())
    try:
        # Shielded: a handshake cancelled halfway leaves aiormq's reader and heartbeat tasks
        # behind, pending until the loop closes. A caller that gives up lets the handshake
        # under way end, but does not wait out the pause before the next one.
        await asyncio.shield(attempt)
    except asyncio.CancelledError:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.attempt_over.wait(), CLOSE_TIMEOUT_SECONDS)
        await connection.close()
        attempt.cancel()
        raise
    return connection


async def connect_once(
    settings: BrokerSettings, role: str, timeout_seconds: float
) -> AbstractConnection:
    """The first node that answers, in the order listed, each tried once, for a command: if the
    connection drops later, the command ends (run it again) instead of reconnecting behind the
    operator's back."""
    errors: list[str] = []
    for url in settings.urls:
        try:
            return await aio_pika.connect(
                url,
                timeout=timeout_seconds,
                client_properties={"connection_name": connection_name(role, settings)},
            )
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
            errors.append(f"RabbitMQ at {redacted_url(url)}: {error!r}")
    raise BrokerUnavailable("; ".join(errors))
