"""The payout events each delivery carries, and when the delivery is settled: acked once every one
of its events is committed, recorded or moved on, and returned to the queue at most once.

A single-event message carries one event; an envelope (`schema/envelopes.py`) one per event it
holds. An envelope that cannot be opened is one part, poison as a whole. An event taken out of an
envelope is moved on as the single-event message it would have been, so the retry tiers and the
dead-letter queue only ever hold single payouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from schema.envelopes import ENVELOPE_TYPE, EnclosedEvent, decode_envelope
from schema.errors import ContractError
from schema.events import EVENT_TYPE, PayoutEvent, decode_event

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from broker.deliveries import Delivery, OpenDeliveries

__all__ = ["ENVELOPE_ID", "DeliveredEvent", "EventDeliveries", "SingleMessage"]

# On an event moved out of an envelope: the envelope's message id, to trace it back.
ENVELOPE_ID = "x-payouts-envelope-id"


class SingleMessage(Protocol):
    """What a move copies: a delivery, or an event out of an envelope as a message of its own."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def reply_to(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Unenveloped:
    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    timestamp: datetime | None
    reply_to: str | None
    content_type: str | None = "application/json"
    type: str | None = EVENT_TYPE


class _Carrier:
    """One delivery: how many of its events are still waiting, and whether it is settled."""

    __slots__ = ("message", "settled", "waiting")

    def __init__(self, message: Delivery) -> None:
        self.message = message
        self.waiting = 0
        self.settled = False


@dataclass(frozen=True, slots=True, eq=False)
class DeliveredEvent:
    """One event of a delivery: decoded, or `problem` says why it is poison."""

    carrier: _Carrier
    event: PayoutEvent | None
    problem: ContractError | None
    # Where it sits in its envelope; None when it is the delivery itself.
    enclosed: tuple[int, EnclosedEvent] | None = None

    @property
    def delivery(self) -> Delivery:
        return self.carrier.message

    def log_fields(self) -> dict[str, str]:
        return self.event.log_fields() if self.event is not None else {}

    def as_message(self) -> SingleMessage:
        """The single-event message a move copies: the delivery, or this event on its own."""
        envelope = self.carrier.message
        if self.enclosed is None:
            return envelope
        index, enclosed = self.enclosed
        headers = {**envelope.headers, ENVELOPE_ID: envelope.message_id or ""}
        if self.event is None:
            claimed = (enclosed.value or {}).get("event_id")
            message_id = claimed if isinstance(claimed, str) else f"{envelope.message_id}:{index}"
            return _Unenveloped(
                enclosed.single_body(), headers, message_id, envelope.timestamp, envelope.reply_to
            )
        headers["provider_instance"] = self.event.provider_instance
        return _Unenveloped(
            enclosed.single_body(),
            headers,
            str(self.event.event_id),
            self.event.received_at,
            envelope.reply_to,
        )


class EventDeliveries:
    """The events of the deliveries open in `open_deliveries`, settling each delivery once."""

    def __init__(self, open_deliveries: OpenDeliveries) -> None:
        self._open = open_deliveries

    def received(self, message: Delivery) -> list[DeliveredEvent]:
        """Open `message` and take out its events; none when its channel closed first (the
        broker has requeued it)."""
        if not self._open.received(message):
            return []
        carrier = _Carrier(message)
        parts = _parts(carrier)
        carrier.waiting = len(parts)
        return parts

    def is_open(self, part: DeliveredEvent) -> bool:
        """False once its delivery is settled, or its channel closed."""
        return not part.carrier.settled and self._open.is_open(part.delivery)

    async def finished(self, parts: Iterable[DeliveredEvent]) -> None:
        """Count `parts` as committed, recorded or moved on, and ack each delivery with no event
        left: with one `multiple` ack when they are the oldest open deliveries on their channel
        (the usual case for a batch), else each."""
        done: list[Delivery] = []
        for part in parts:
            carrier = part.carrier
            carrier.waiting -= 1
            if carrier.waiting == 0 and not carrier.settled:
                carrier.settled = True
                done.append(carrier.message)
        if not done:
            return
        last = self._open.single_ack(done)
        if last is None:
            for message in done:
                await self._open.settle(message.ack(), message)
            return
        try:
            await self._open.settle(last.ack(multiple=True), last)
        finally:
            for message in done:
                self._open.settled(message)

    async def returned(self, part: DeliveredEvent) -> None:
        """Return the delivery of `part` to the queue, unless it is settled already. The broker
        redelivers all its events; those committed meanwhile are duplicates then."""
        carrier = part.carrier
        if carrier.settled:
            return
        carrier.settled = True
        await self._open.settle(carrier.message.nack(requeue=True), carrier.message)


def _parts(carrier: _Carrier) -> list[DeliveredEvent]:
    message = carrier.message
    try:
        if message.type != ENVELOPE_TYPE:
            return [DeliveredEvent(carrier, decode_event(message.body), None)]
        enclosed = decode_envelope(message.body)
    except ContractError as error:
        return [DeliveredEvent(carrier, None, error)]
    return [
        DeliveredEvent(carrier, each.event, each.error, (index, each))
        for index, each in enumerate(enclosed)
    ]
