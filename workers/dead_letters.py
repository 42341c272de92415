"""Dead-lettered messages: what each one says about itself, its record in Postgres, and the
queue operations behind `payouts dlq` (browse, replay, purge, export, import).

Browsing fetches messages without acking them; whatever was not settled returns to the queue when
the channel closes. A message leaves the queue only after its replay was confirmed by the broker
(or, for a purge, after it was recorded in Postgres), so an interrupted run loses nothing and a
second run is safe: a replayed payout that was already credited is a duplicate, nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aio_pika

from schema.broker import (
    BrokerUnavailable,
    ConfirmedPublisher,
    connection_name,
    persistent_message,
)
from schema.events import ContractError, decode_event
from schema.logs import redacted_url
from schema.topology import Topology, declare
from workers import failures as names

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

    from schema.settings import BrokerSettings
    from workers.database import Connection

__all__ = [
    "DeadLetter",
    "DeadLetterQueue",
    "Exported",
    "Fetched",
    "Selection",
    "record_dead_letter",
]

RECORD = """
INSERT INTO dead_letters (dead_letter_id, message_id, provider_instance, transaction_id, kind,
                          error, attempts, first_failure_at, last_failure_at, worker,
                          original_exchange, original_routing_key, headers, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)
ON CONFLICT (dead_letter_id) DO NOTHING
"""

MARK = """
UPDATE dead_letters SET status = $2,
       replayed_at = CASE WHEN $2 = 'replayed' THEN now() ELSE replayed_at END,
       purged_at = CASE WHEN $2 = 'purged' THEN now() ELSE purged_at END
WHERE dead_letter_id = $1
"""

REPLAY_OF = "x-payouts-replay-of"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # Decimal and whatever else a producer put in a header


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

    @classmethod
    def from_parts(cls, headers: dict[str, Any], body: bytes, message_id: str | None) -> DeadLetter:
        """Ours carry x-payouts-* headers; one the broker dead-lettered itself (the delivery
        limit) carries only x-death, and gets an id derived from what cannot change."""
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
            kind = f"broker:{_jsonable(death.get('reason', 'unknown'))}"
            error = f"dead-lettered by the broker from {_jsonable(death.get('queue', '?'))}"
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
            or _jsonable(death.get("exchange")),
            original_routing_key=headers.get(names.ORIGINAL_ROUTING_KEY),
            history=[str(item) for item in history] if isinstance(history, list) else [],
            headers=headers,
            body=body,
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
            "body": body,
        }

    def to_jsonl(self) -> str:
        # The id goes into the headers too, so an imported copy keeps its identity (and its
        # record) even where the id was derived from broker headers that do not survive JSON.
        headers = {**_jsonable(self.headers), names.DEAD_LETTER_ID: self.dead_letter_id}
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
        json.dumps(_jsonable(headers)),
        body,
    )
    return entry


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to; an empty selection matches all."""

    ids: tuple[str, ...] = ()
    provider: str | None = None
    reason: str | None = None
    transaction: str | None = None
    older_than_seconds: float | None = None

    def matches(self, entry: DeadLetter, now: datetime) -> bool:
        if self.ids and not any(
            entry.dead_letter_id.startswith(wanted) or entry.message_id == wanted
            for wanted in self.ids
        ):
            return False
        if self.provider is not None and entry.provider_instance != self.provider:
            return False
        if self.transaction is not None and entry.transaction_id != self.transaction:
            return False
        if self.reason is not None and self.reason not in (entry.kind, entry.error.split(":")[0]):
            return False
        if self.older_than_seconds is not None:
            age = entry.age_seconds(now)
            return age is not None and age >= self.older_than_seconds
        return True


@dataclass
class Fetched:
    entry: DeadLetter
    delivery: AbstractIncomingMessage


class DeadLetterQueue:
    """One browsing session on the dead-letter queue, with a confirmed publisher beside it."""

    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._topology = Topology.from_settings(settings)
        self._publisher = ConfirmedPublisher(settings, "dlq")
        self._queue: AbstractQueue | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: BrokerSettings) -> AsyncIterator[DeadLetterQueue]:
        """A plain connection: if it drops, the run ends (run it again) instead of reconnecting
        and fetching the messages it already holds a second time."""
        dlq = cls(settings)
        try:
            connection = await aio_pika.connect(
                settings.url,
                timeout=settings.publish_timeout_seconds,
                client_properties={"connection_name": connection_name("dlq", settings)},
            )
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
            where = redacted_url(settings.url)
            raise BrokerUnavailable(f"RabbitMQ at {where}: {error!r}") from None
        dlq._publisher.start()
        try:
            channel = await connection.channel()
            await declare(channel, dlq._topology)
            dlq._queue = await channel.get_queue(dlq._topology.dead_letter_queue)
            await dlq._publisher.wait_ready()
            yield dlq
        finally:
            # Closing returns every message fetched and not settled to the queue.
            await connection.close()
            await dlq._publisher.close()

    async def fetch(self, selection: Selection, limit: int | None = None) -> list[Fetched]:
        """Every message (up to `limit` matching ones), held unacked while this session lasts."""
        assert self._queue is not None
        now = datetime.now(UTC)
        matching: list[Fetched] = []
        while limit is None or len(matching) < limit:
            delivery = await self._queue.get(no_ack=False, fail=False)
            if delivery is None:
                break
            entry = DeadLetter.from_parts(
                dict(delivery.headers or {}), delivery.body, delivery.message_id
            )
            if selection.matches(entry, now):
                matching.append(Fetched(entry, delivery))
        return matching

    async def replay(self, fetched: Fetched, conn: Connection) -> None:
        """Record, re-publish to the work exchange (confirmed), mark replayed, then ack."""
        entry = fetched.entry
        await record_dead_letter(conn, entry.body, entry.headers, entry.message_id)
        headers = {
            key: value
            for key, value in names.carried_headers(entry.headers).items()
            if key not in names.FAILURE_HEADERS
        }
        headers[REPLAY_OF] = entry.dead_letter_id
        await self._publisher.publish(
            persistent_message(
                entry.body,
                headers=headers,
                content_type=fetched.delivery.content_type,
                message_id=entry.message_id,
                type=fetched.delivery.type,
            )
        )
        await conn.execute(MARK, entry.dead_letter_id, "replayed")
        await fetched.delivery.ack()

    async def purge(self, fetched: Fetched, conn: Connection) -> None:
        """Record (so the incident can still be reviewed), ack, then mark it purged."""
        entry = fetched.entry
        await record_dead_letter(conn, entry.body, entry.headers, entry.message_id)
        await fetched.delivery.ack()
        await conn.execute(MARK, entry.dead_letter_id, "purged")

    async def add(self, exported: Exported) -> None:
        """Put one exported message back into the dead-letter queue, confirmed."""
        await self._publisher.publish(
            persistent_message(
                exported.body, headers=exported.headers, message_id=exported.message_id
            ),
            exchange=self._topology.dead_letter_exchange,
            routing_key="",
        )


@dataclass(frozen=True)
class Exported:
    """One line of `payouts dlq export`, checked whole before anything is published."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None

    @classmethod
    def parse(cls, line: str) -> Exported:
        """ValueError says what is wrong with the line."""
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            raise ValueError("not a JSON object") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        encoded = data.get("body_base64")
        headers = data.get("headers", {})
        message_id = data.get("message_id")
        if not isinstance(encoded, str):
            raise ValueError("body_base64 must be a string")
        if not isinstance(headers, dict):
            raise ValueError("headers must be an object")
        if message_id is not None and (not isinstance(message_id, str) or len(message_id) > 255):
            raise ValueError("message_id must be a string of at most 255 characters")
        try:
            body = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError("body_base64 is not base64") from None
        return cls(body, names.carried_headers(headers), message_id)
