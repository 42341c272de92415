"""Dead-lettered messages: what each one says about itself, and its record in Postgres. The
operator's actions on the queue are in `payouts.actions.dead_letters`."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schema.envelopes import ENVELOPE_TYPE, decode_envelope
from schema.errors import ContractError
from schema.events import decode_event
from schema.plain_values import plain_value
from workers import failures as names

if TYPE_CHECKING:
    from workers.database import Connection

__all__ = ["DeadEnvelope", "DeadLetter", "record_dead_letter"]

# What every envelope type starts with, whatever its version (schema.envelopes.ENVELOPE_TYPE).
_ENVELOPE_TYPE_PREFIX = ENVELOPE_TYPE.rpartition(".")[0] + "."

RECORD = """
INSERT INTO dead_letters (dead_letter_id, message_id, provider_instance, transaction_id, kind,
                          error, attempts, first_failure_at, last_failure_at, worker,
                          original_exchange, original_routing_key, headers, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)
ON CONFLICT (dead_letter_id) DO NOTHING
"""


def _time(value: Any) -> datetime | None:
    """An aware time; naive ones (another producer, a hand edit) are taken as UTC."""
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@dataclass(frozen=True)
class DeadEnvelope:
    """An envelope dead-lettered whole: how many events it holds, when its body can be read
    that far, and why a worker of this release would refuse it again (None: it would take it,
    as one dead-lettered by the broker or by a worker that did not know envelopes yet)."""

    events: int | None
    malformed: str | None

    @classmethod
    def of(cls, body: bytes, message_type: str | None) -> DeadEnvelope | None:
        """None for a single-event message. An envelope is told by its AMQP type, or, where the
        type was lost (an exported copy imported again), by its `envelope_version` key."""
        try:
            value: Any = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        by_type = message_type is not None and message_type.startswith(_ENVELOPE_TYPE_PREFIX)
        by_body = message_type is None and isinstance(value, dict) and "envelope_version" in value
        if not by_type and not by_body:
            return None
        events = value.get("events") if isinstance(value, dict) else None
        count = len(events) if isinstance(events, list) else None
        if message_type not in (ENVELOPE_TYPE, None):
            return cls(count, f"type {message_type!r} is not one this release reads")
        try:
            decode_envelope(body)
        except ContractError as error:
            return cls(count, str(error))
        return cls(count, None)

    def details(self) -> dict[str, Any]:
        return {"events": self.events, "malformed": self.malformed}


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: str
    message_id: str | None
    provider_instance: str | None
    transaction_id: str | None
    kind: str
    error: str
    attempts: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    worker: str | None
    original_exchange: str | None
    original_routing_key: str | None
    history: list[str]
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)
    # Set for an envelope dead-lettered whole; its events dead-lettered one by one are not.
    envelope: DeadEnvelope | None = None

    @classmethod
    def from_parts(
        cls,
        headers: dict[str, Any],
        body: bytes,
        message_id: str | None,
        message_type: str | None = None,
    ) -> DeadLetter:
        """Ours carry x-payouts-* headers; one the broker dead-lettered itself (the delivery
        limit) carries only x-death, and gets an id derived from what cannot change.
        `message_type` is the AMQP type, where it is known."""
        provider: Any
        transaction: str | None
        try:
            event = decode_event(body)
            provider, transaction = event.provider_instance, event.transaction_id
        except ContractError:
            provider, transaction = headers.get("provider_instance"), None
        deaths = headers.get("x-death")
        death = (
            deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        )
        entry_id = headers.get(names.DEAD_LETTER_ID) or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{message_id}|{death.get('time')}|{body!r}")
        )
        if names.DEAD_LETTER_ID in headers:
            kind = str(headers.get(names.KIND, "unknown"))
            error = f"{headers.get(names.ERROR_TYPE, '')}: {headers.get(names.ERROR_MESSAGE, '')}"
            attempts = headers.get(names.ATTEMPTS, 0)
        else:
            kind = f"broker:{plain_value(death.get('reason', 'unknown'))}"
            error = f"dead-lettered by the broker from {plain_value(death.get('queue', '?'))}"
            attempts = headers.get("x-delivery-count") or death.get("count", 0)
        history = headers.get(names.HISTORY)
        return cls(
            dead_letter_id=str(entry_id),
            message_id=message_id,
            provider_instance=str(provider) if provider else None,
            transaction_id=transaction,
            kind=kind,
            error=error,
            attempts=attempts if isinstance(attempts, int) else 0,
            first_failure_at=_time(headers.get(names.FIRST_FAILURE)),
            last_failure_at=_time(headers.get(names.LAST_FAILURE)) or _time(death.get("time")),
            worker=headers.get(names.WORKER),
            original_exchange=headers.get(names.ORIGINAL_EXCHANGE)
            or plain_value(death.get("exchange")),
            original_routing_key=headers.get(names.ORIGINAL_ROUTING_KEY),
            history=[str(item) for item in history] if isinstance(history, list) else [],
            headers=headers,
            body=body,
            envelope=DeadEnvelope.of(body, message_type),
        )

    def age_seconds(self, now: datetime) -> float | None:
        return (now - self.last_failure_at).total_seconds() if self.last_failure_at else None

    def summary(self, now: datetime) -> dict[str, Any]:
        age = self.age_seconds(now)
        return {
            "dead_letter_id": self.dead_letter_id,
            "provider_instance": self.provider_instance,
            "transaction_id": self.transaction_id,
            "kind": self.kind,
            "error": self.error,
            "attempts": self.attempts,
            "age_seconds": round(age) if age is not None else None,
            "envelope": self.envelope.details() if self.envelope is not None else None,
        }

    def details(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body)
        except (ValueError, RecursionError):
            body = self.body.decode("utf-8", "replace")
        return {
            "dead_letter_id": self.dead_letter_id,
            "message_id": self.message_id,
            "provider_instance": self.provider_instance,
            "transaction_id": self.transaction_id,
            "kind": self.kind,
            "error": self.error,
            "attempts": self.attempts,
            "first_failure_at": self.first_failure_at,
            "last_failure_at": self.last_failure_at,
            "worker": self.worker,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "history": self.history,
            "envelope": self.envelope.details() if self.envelope is not None else None,
            "body": body,
        }

    def to_jsonl(self) -> str:
        # The id goes into the headers too, so an imported copy keeps its identity (and its
        # record) even where the id was derived from broker headers that do not survive JSON.
        headers = {**plain_value(self.headers), names.DEAD_LETTER_ID: self.dead_letter_id}
        return json.dumps(
            {
                "dead_letter_id": self.dead_letter_id,
                "message_id": self.message_id,
                "headers": headers,
                "body_base64": base64.b64encode(self.body).decode(),
            }
        )


async def record_dead_letter(
    conn: Connection, body: bytes, headers: dict[str, Any], message_id: str | None
) -> DeadLetter:
    entry = DeadLetter.from_parts(headers, body, message_id)
    await conn.execute(
        RECORD,
        entry.dead_letter_id,
        entry.message_id,
        entry.provider_instance,
        entry.transaction_id,
        entry.kind,
        entry.error,
        entry.attempts,
        entry.first_failure_at,
        entry.last_failure_at,
        entry.worker,
        entry.original_exchange,
        entry.original_routing_key,
        json.dumps(plain_value(headers)),
        body,
    )
    return entry
