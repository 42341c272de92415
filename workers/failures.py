"""Why a delivery failed, what happens next, and the history a failed message carries with it.

Four kinds: transient (the database is away, busy or lost a race) and unexpected (a bug) go
through the retry tiers and are dead-lettered after the last; poison (a body that is not a payout
event) is dead-lettered at once; business (a payout held for a missing wallet) is recorded and
dead-lettered at once, so it can be replayed after the cause is fixed. The count and the history
travel in our own `x-payouts-*` headers: the broker ignores client-set `x-death` (rabbitmq-server
#10709, #11331).
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg

from schema.errors import DatabaseUnavailable, PayoutsError
from schema.plain_values import plain_value

__all__ = [
    "DEAD_LETTER_ID",
    "FAILURE_HEADERS",
    "TRANSIENT_ERRORS",
    "ClaimRaced",
    "Failure",
    "FailureKind",
    "carried_headers",
    "dead_letter_headers",
    "failure_of",
    "retry_delay_ms",
    "retry_headers",
]


class ClaimRaced(PayoutsError):
    """Another transaction recorded one of the batch's transaction ids or signatures between
    the look-up and the insert. Nothing is wrong with the payouts: rolled back and retried, the
    batch finds the key recorded and gives that payout the outcome of a re-send, a conflict or
    a reused signature."""


# Failures that say nothing about the message: the database is away, busy, or lost a race.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    # A new connection found no host taking writes: a failover still in progress.
    DatabaseUnavailable,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a failover in progress
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
    # Our own transaction, ended by Postgres while this process was frozen.
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    ClaimRaced,
)

ATTEMPTS = "x-payouts-attempts"
FIRST_FAILURE = "x-payouts-first-failure"
LAST_FAILURE = "x-payouts-last-failure"
KIND = "x-payouts-failure-kind"
ERROR_TYPE = "x-payouts-error-type"
ERROR_MESSAGE = "x-payouts-error-message"
WORKER = "x-payouts-worker"
HISTORY = "x-payouts-history"
DEAD_LETTER_ID = "x-payouts-dead-letter-id"
DEAD_LETTERED_AT = "x-payouts-dead-lettered-at"
ORIGINAL_EXCHANGE = "x-payouts-original-exchange"
ORIGINAL_ROUTING_KEY = "x-payouts-original-routing-key"
FAILURE_HEADERS = (
    ATTEMPTS,
    FIRST_FAILURE,
    LAST_FAILURE,
    KIND,
    ERROR_TYPE,
    ERROR_MESSAGE,
    WORKER,
    HISTORY,
    DEAD_LETTER_ID,
    DEAD_LETTERED_AT,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
)
MAX_HISTORY = 10
MAX_ERROR_MESSAGE = 500
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    """The database or the broker failed; retried through the tiers."""
    UNEXPECTED = "unexpected"
    """An error nobody planned for (a bug); retried through the tiers in case a fix ships."""
    POISON = "poison"
    """The body is not a payout event this code understands; dead-lettered at once."""
    BUSINESS = "business"
    """Recorded with an outcome and dead-lettered at once, to replay after the cause is fixed."""


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    error_type: str
    message: str


def failure_of(error: BaseException) -> Failure:
    if isinstance(error, TRANSIENT_ERRORS):
        kind = FailureKind.TRANSIENT
    elif isinstance(error, asyncpg.exceptions.DataError):
        kind = FailureKind.POISON  # the database refuses a value: no retry will change that
    else:
        kind = FailureKind.UNEXPECTED
    return Failure(kind, type(error).__name__, str(error)[:MAX_ERROR_MESSAGE])


# Headers the broker owns; copying them onto a new message would be wrong (and x-death carries
# values a re-publish cannot always encode).
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def carried_headers(headers: Any) -> dict[str, Any]:
    """The headers of a message we re-publish: ours and the producer's, never the broker's."""
    if not isinstance(headers, dict):
        return {}
    return {
        str(key): plain_value(value)
        for key, value in headers.items()
        if value is not None and not str(key).startswith(_BROKER_HEADERS)
    }


def _attempts(headers: dict[str, Any]) -> int:
    value = headers.get(ATTEMPTS, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def retry_headers(
    headers: dict[str, Any], failure: Failure, now: datetime | None = None
) -> dict[str, Any]:
    """The headers after one more failed attempt: count, first and last time, bounded history."""
    at = (now or datetime.now(UTC)).isoformat()
    history = headers.get(HISTORY)
    entries = [str(item) for item in history] if isinstance(history, list) else []
    entries.append(f"{at} {WORKER_ID} {failure.kind} {failure.error_type}: {failure.message}")
    return {
        **carried_headers(headers),
        ATTEMPTS: _attempts(headers) + 1,
        FIRST_FAILURE: headers.get(FIRST_FAILURE) or at,
        LAST_FAILURE: at,
        KIND: failure.kind.value,
        ERROR_TYPE: failure.error_type,
        ERROR_MESSAGE: failure.message,
        WORKER: WORKER_ID,
        HISTORY: entries[-MAX_HISTORY:],
    }


def dead_letter_headers(
    headers: dict[str, Any], exchange: str | None, routing_key: str | None
) -> dict[str, Any]:
    """Headers already counting the last failure, plus the entry's identity and origin."""
    return {
        **headers,
        DEAD_LETTER_ID: str(uuid.uuid4()),
        DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
        ORIGINAL_EXCHANGE: exchange or "",
        ORIGINAL_ROUTING_KEY: routing_key or "",
    }


def retry_delay_ms(
    delays_seconds: tuple[int, ...], attempts: int, jitter: float
) -> tuple[int, int] | None:
    """(tier delay in seconds, this message's wait in ms) before attempt `attempts + 1`, or None
    when the tiers are exhausted and the message must be dead-lettered."""
    if attempts > len(delays_seconds):
        return None
    delay = delays_seconds[attempts - 1]
    wait_ms = int(delay * 1000 * (1 - random.uniform(0, jitter)))  # noqa: S311 - jitter
    return delay, max(wait_ms, 1)
