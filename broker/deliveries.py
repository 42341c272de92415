"""The deliveries a worker holds, and which are open on each channel, so that one ack can settle
a committed batch.

AMQP's `multiple` ack settles every delivery on the channel up to a tag. It is safe only when
every open delivery up to that tag is one whose payout has committed; otherwise it would settle a
delivery still being credited, which a crash would then lose.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aio_pika.exceptions import ChannelInvalidStateError

from broker.connection import BROKER_ERRORS
from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Collection, Mapping, Set
    from datetime import datetime

    from aiormq.abc import AbstractChannel, DeliveredMessage

__all__ = ["Delivery", "OpenDeliveries", "channel_of", "single_ack_tag"]

logger = logging.getLogger(__name__)


class Delivery:
    """One delivery as aiormq hands it over, with what the worker reads of it.

    aio-pika's IncomingMessage copies every property of every delivery up front, through an
    attribute setter that checks a lock on each assignment (its cost: docs/benchmarks.md,
    *Changed between the 20:56 and 22:48 runs*), for fields the worker mostly never reads. This
    reads them when asked.
    """

    __slots__ = ("_message",)

    def __init__(self, message: DeliveredMessage) -> None:
        self._message = message

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def delivery_tag(self) -> int:
        tag = self._message.delivery_tag
        assert tag is not None  # consumed with acks: the broker always sets it
        return tag

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered)

    @property
    def exchange(self) -> str:
        return self._message.exchange or ""

    @property
    def routing_key(self) -> str:
        return self._message.routing_key or ""

    @property
    def headers(self) -> Mapping[str, Any]:
        return self._message.header.properties.headers or {}

    @property
    def message_id(self) -> str | None:
        return self._message.header.properties.message_id

    @property
    def content_type(self) -> str | None:
        return self._message.header.properties.content_type

    @property
    def type(self) -> str | None:
        return self._message.header.properties.message_type

    @property
    def reply_to(self) -> str | None:
        """Where the publisher wants to hear back: an ingress process's outcome channel."""
        return self._message.header.properties.reply_to

    @property
    def timestamp(self) -> datetime | None:
        return self._message.header.properties.timestamp

    @property
    def channel(self) -> AbstractChannel:
        """Raises ChannelInvalidStateError once the channel is closed: the broker has requeued
        the delivery then, and it can no longer be settled."""
        channel = self._message.channel
        if channel.is_closed:
            raise ChannelInvalidStateError(f"the channel of delivery {self.delivery_tag} closed")
        return channel

    async def ack(self, *, multiple: bool = False) -> None:
        await self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, *, requeue: bool) -> None:
        await self.channel.basic_nack(self.delivery_tag, requeue=requeue)


def single_ack_tag(open_tags: Set[int], committed: Collection[int]) -> int | None:
    """The tag of one `multiple` ack that settles exactly `committed` (all open on the channel),
    or None when an open delivery outside `committed` is older than one inside."""
    tags = set(committed)
    if not tags or not tags <= open_tags:
        return None
    highest = max(tags)
    older_or_same = sum(1 for tag in open_tags if tag <= highest)
    return highest if older_or_same == len(tags) else None


class OpenDeliveries:
    """Delivery tags received and not yet settled, per channel (tags restart on a new channel)."""

    def __init__(self) -> None:
        self._by_channel: dict[AbstractChannel, set[int]] = {}

    def received(self, message: Delivery) -> bool:
        """Open `message`; False when its channel closed first: the broker has requeued it."""
        channel = channel_of(message)
        if channel is None:
            return False
        if channel not in self._by_channel:
            # A channel opened after a reconnect: forget the closed ones and their tags.
            self._by_channel = {
                known: tags for known, tags in self._by_channel.items() if not known.is_closed
            }
            self._by_channel[channel] = set()
        self._by_channel[channel].add(message.delivery_tag)
        return True

    def is_open(self, message: Delivery) -> bool:
        return message.delivery_tag in self._tags_of(message)

    def settled(self, message: Delivery) -> None:
        self._tags_of(message).discard(message.delivery_tag)

    async def settle(self, action: Awaitable[None], message: Delivery) -> None:
        """Ack, nack or reject `message` by awaiting `action`; on a dead channel the broker has
        already requeued it."""
        try:
            await action
        except BROKER_ERRORS as error:
            log(
                logger,
                logging.WARNING,
                "could not settle message; the broker will redeliver it",
                message_id=message.message_id,
                error=repr(error),
            )
        finally:
            self.settled(message)

    def _tags_of(self, message: Delivery) -> set[int]:
        """Its channel's open tags; none once the channel is closed."""
        channel = channel_of(message)
        return self._by_channel.get(channel, set()) if channel is not None else set()

    def single_ack(self, messages: list[Delivery]) -> Delivery | None:
        """The message whose `multiple` ack settles exactly `messages`, if there is one."""
        channel = channel_of(messages[0])
        if channel is None or any(channel_of(m) is not channel for m in messages[1:]):
            return None
        tag = single_ack_tag(self._tags_of(messages[0]), [m.delivery_tag for m in messages])
        return next((m for m in messages if m.delivery_tag == tag), None)


def channel_of(message: Delivery) -> AbstractChannel | None:
    """The channel a delivery came on; None once it is closed, when the broker has requeued it."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None
