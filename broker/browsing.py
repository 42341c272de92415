"""Browsing a queue: its messages fetched one by one and held unacked for one session, so that
closing the session returns every message that was not settled."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.connection import connect_once
from broker.declaration import declare

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

    from schema.settings import BrokerSettings
    from schema.topology import Topology

__all__ = ["Browsed", "QueueBrowser"]


@dataclass(frozen=True)
class Browsed:
    """One fetched message, held until `ack` removes it from the queue or the session ends."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    content_type: str | None
    type: str | None
    _delivery: AbstractIncomingMessage

    async def ack(self) -> None:
        await self._delivery.ack()


class QueueBrowser:
    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue

    @property
    def depth_at_open(self) -> int:
        """Messages ready in the queue when the session opened, from its passive declare: those
        another session (a browse, a replay under way) held unacked then are not counted."""
        return self._queue.declaration_result.message_count or 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: BrokerSettings, topology: Topology, queue_name: str, role: str
    ) -> AsyncIterator[QueueBrowser]:
        """A plain connection (BrokerUnavailable if there is none): if it drops, the session
        ends instead of reconnecting and fetching the messages it holds a second time."""
        connection = await connect_once(settings, role, settings.publish_timeout_seconds)
        try:
            channel = await connection.channel()
            await declare(channel, topology)
            yield cls(await channel.get_queue(queue_name))
        finally:
            # Closing returns every message fetched and not settled to the queue.
            await connection.close()

    async def next(self) -> Browsed | None:
        """The next message not yet fetched in this session; None when there is none."""
        delivery = await self._queue.get(no_ack=False, fail=False)
        if delivery is None:
            return None
        return Browsed(
            body=delivery.body,
            headers=dict(delivery.headers or {}),
            message_id=delivery.message_id,
            content_type=delivery.content_type,
            type=delivery.type,
            _delivery=delivery,
        )
