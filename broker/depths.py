"""How many messages wait in a queue, read by a passive declare on a channel of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel

    from broker.connection import RobustConnection

__all__ = ["QueueDepths"]


class QueueDepths:
    """Reads queue depths over `connection`, on a channel opened at the first read and again
    whenever it is found closed."""

    def __init__(self, connection: RobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractRobustChannel | None = None

    async def read(self, name: str) -> int:
        """Messages ready in queue `name`; one of BROKER_ERRORS when the broker, the channel or
        the queue is away."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        # Not robust: a robust channel answers a passive declare of a queue it declared before
        # from its cache, with the depth it read then.
        declared = await self._channel.declare_queue(name, passive=True, robust=False)
        assert declared.declaration_result.message_count is not None
        return declared.declaration_result.message_count
