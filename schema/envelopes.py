"""The envelope: many payout events in one queue message, so the broker's per-message cost is paid
once for all of them.

Told apart from a single-event message (`schema.events.EVENT_TYPE`) by its AMQP type,
`ENVELOPE_TYPE`. Versioned by `envelope_version`, apart from the events' own `contract_version`:
the envelope's shape is checked strictly (a malformed envelope is poison as a whole), and each
event is decoded on its own, so one that breaks the event contract is poison alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schema.errors import ContractError
from schema.events import PayoutEvent, encode_event, event_from_json

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ENVELOPE_TYPE",
    "ENVELOPE_VERSION",
    "MAX_EVENTS_PER_ENVELOPE",
    "EnclosedEvent",
    "decode_envelope",
    "encode_envelope",
]

# The one place the version is written, as for the event contract.
EnvelopeVersion = Literal[1]
ENVELOPE_VERSION: EnvelopeVersion = 1
ENVELOPE_TYPE = f"payout-envelope.v{ENVELOPE_VERSION}"
# Bounds what one message can make a worker hold; the ingress's envelope size stays below it.
MAX_EVENTS_PER_ENVELOPE = 1000


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    envelope_version: EnvelopeVersion
    # JSON objects, each decoded as an event on its own.
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_EVENTS_PER_ENVELOPE)


class _SoundEnvelope(_Envelope):
    """An envelope whose every event keeps the contract, the usual case: decoded in one pass,
    without the JSON objects `_Envelope` builds first (twice the work, and objects for the
    garbage collector)."""

    events: list[PayoutEvent] = Field(  # type: ignore[assignment]
        min_length=1, max_length=MAX_EVENTS_PER_ENVELOPE
    )


@dataclass(frozen=True, slots=True)
class EnclosedEvent:
    """One event of an envelope: decoded, or the reason it breaks the event contract."""

    # The JSON object as it came; kept only for one that is not an event (None otherwise).
    value: dict[str, Any] | None
    event: PayoutEvent | None
    error: ContractError | None

    def single_body(self) -> bytes:
        """Its body as a single-event message: what the ingress would have published alone, or
        the object as it came when it is not an event."""
        if self.event is not None:
            return encode_event(self.event)
        return json.dumps(self.value, ensure_ascii=False).encode()


def encode_envelope(events: Sequence[PayoutEvent]) -> bytes:
    """Each event encoded as in a single-event message, inside the envelope."""
    if not 1 <= len(events) <= MAX_EVENTS_PER_ENVELOPE:
        raise ValueError(f"an envelope holds 1 to {MAX_EVENTS_PER_ENVELOPE} events")
    enclosed = b",".join(encode_event(event) for event in events)
    return b'{"envelope_version":%d,"events":[%b]}' % (ENVELOPE_VERSION, enclosed)


def decode_envelope(body: bytes) -> list[EnclosedEvent]:
    """Its events in order; ContractError when the envelope itself is malformed."""
    try:
        sound = _SoundEnvelope.model_validate_json(body)
    except ValidationError:
        pass  # a malformed envelope, or an event that is not one: told apart below
    else:
        return [EnclosedEvent(None, event, None) for event in sound.events]
    try:
        envelope = _Envelope.model_validate_json(body)
    except ValidationError as error:
        raise ContractError(
            f"not a payout envelope of version {ENVELOPE_VERSION}: {error}"
        ) from None
    return [_enclosed(value) for value in envelope.events]


def _enclosed(value: dict[str, Any]) -> EnclosedEvent:
    try:
        return EnclosedEvent(value, event_from_json(value), None)
    except ContractError as error:
        return EnclosedEvent(value, None, error)
