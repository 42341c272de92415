"""The deliveries a worker holds on each channel, so that one ack can settle a committed batch.

AMQP's `multiple` ack settles every delivery on the channel up to a tag. It is safe only when
every open delivery up to that tag is one whose payout has committed; otherwise it would settle a
delivery still being credited, which a crash would then lose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aio_pika.exceptions import ChannelInvalidStateError

if TYPE_CHECKING:
    from collections.abc import Collection, Set

    from aio_pika.abc import AbstractIncomingMessage
    from aiormq.abc import AbstractChannel

__all__ = ["OpenDeliveries", "channel_of", "single_ack_tag"]


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

    def received(self, message: AbstractIncomingMessage) -> None:
        channel = message.channel
        if channel not in self._by_channel:
            # A channel opened after a reconnect: forget the closed ones and their tags.
            self._by_channel = {
                known: tags for known, tags in self._by_channel.items() if not known.is_closed
            }
            self._by_channel[channel] = set()
        self._by_channel[channel].add(_tag(message))

    def is_open(self, message: AbstractIncomingMessage) -> bool:
        return _tag(message) in self._tags_of(message)

    def settled(self, message: AbstractIncomingMessage) -> None:
        self._tags_of(message).discard(_tag(message))

    def _tags_of(self, message: AbstractIncomingMessage) -> set[int]:
        """Its channel's open tags; none once the channel is closed."""
        channel = channel_of(message)
        return self._by_channel.get(channel, set()) if channel is not None else set()

    def single_ack(self, messages: list[AbstractIncomingMessage]) -> AbstractIncomingMessage | None:
        """The message whose `multiple` ack settles exactly `messages`, if there is one."""
        channel = channel_of(messages[0])
        if channel is None or any(channel_of(m) is not channel for m in messages[1:]):
            return None
        tag = single_ack_tag(self._tags_of(messages[0]), [_tag(m) for m in messages])
        return next((m for m in messages if _tag(m) == tag), None)


def _tag(message: AbstractIncomingMessage) -> int:
    assert message.delivery_tag is not None  # consumed with acks: the broker always sets it
    return message.delivery_tag


def channel_of(message: AbstractIncomingMessage) -> AbstractChannel | None:
    """The channel a delivery came on; None once it is closed, when the broker has requeued it."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None
