"""Consume payout events, credit each in its own Postgres transaction, ack only after commit.

Whatever fails is re-published before the original is acked, so nothing leaves the work queue
without being credited, recorded, waiting in a retry tier, or in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aio_pika

from schema.broker import (
    BrokerUnavailable,
    ConfirmedPublisher,
    connect_when_available,
    persistent_message,
)
from schema.events import ContractError, PayoutEvent, decode_event
from schema.logs import log
from schema.outcomes import Outcome, OutcomeReport
from schema.topology import Topology, declare
from workers.crediting import CreditResult, apply_payout
from workers.dead_letters import record_dead_letter
from workers.failures import (
    TRANSIENT_ERRORS,
    Failure,
    FailureKind,
    dead_letter_headers,
    failure_of,
    retry_delay_ms,
    retry_headers,
)
from workers.outcome_reports import send_report

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import asyncpg
    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

    from schema.settings import Settings

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

# Outcomes that need no one's attention; the others are logged as warnings.
QUIET_OUTCOMES = frozenset({Outcome.CREDITED, Outcome.DUPLICATE})
FIRST_RETRY_DELAY_SECONDS = 0.1
MAX_RETRY_DELAY_SECONDS = 2.0
WATCHDOG_INTERVAL_SECONDS = 1.0
CANCEL_TIMEOUT_SECONDS = 5.0
# Before returning a message we could not route, so it cannot bounce back at once.
RETURN_PAUSE_SECONDS = 1.0
# Recording a dead letter in Postgres is for review; it must not hold up the queue when the
# database is the reason for the failure.
RECORD_TIMEOUT_SECONDS = 2.0


class Worker:
    """One consumer with `prefetch` deliveries in flight, each a task of its own."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._topology = Topology.from_settings(settings.broker)
        self._in_flight: set[asyncio.Task[None]] = set()
        # Its own connection: flow control on a publishing connection must not delay our acks.
        self._publisher = ConfirmedPublisher(settings.broker, "worker-publisher")

    async def run(self, stop: asyncio.Event) -> int:
        """Consume until `stop` is set (exit code 0) or no consumer was held for too long (1)."""
        self._publisher.start()
        connection = await connect_when_available(self._settings.broker, "worker")
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._settings.worker.prefetch)
            queue = (await declare(channel, self._topology)).work_queue
            consumer_tag = await queue.consume(self._on_message)
            log(logger, logging.INFO, "worker consuming", queue=self._topology.work_queue)
            exit_code = await self._watch(stop, connection, queue)
            # Stop taking work, let what is in flight finish within the bound, then close.
            # Bounded: on a dead connection the cancel would wait for a reconnect.
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, TimeoutError):
                await asyncio.wait_for(queue.cancel(consumer_tag), CANCEL_TIMEOUT_SECONDS)
            await self._drain(self._settings.worker.shutdown_grace_seconds)
        finally:
            await connection.close()
            await self._publisher.close()
        log(logger, logging.INFO, "worker stopped", exit_code=exit_code)
        return exit_code

    async def _watch(
        self, stop: asyncio.Event, connection: AbstractRobustConnection, queue: AbstractQueue
    ) -> int:
        """Wait for `stop`; give up (1) after `no_consumer_exit_seconds` without a live consumer."""
        limit = self._settings.worker.no_consumer_exit_seconds
        since: float | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCHDOG_INTERVAL_SECONDS)
            consuming = connection.connected.is_set() and not queue.channel.is_closed
            if consuming:
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since > limit:
                log(
                    logger,
                    logging.ERROR,
                    "no consumer for too long; exiting for a restart",
                    seconds=limit,
                )
                return 1
        return 0

    async def _drain(self, grace_seconds: float) -> None:
        if not self._in_flight:
            return
        _, unfinished = await asyncio.wait(self._in_flight, timeout=grace_seconds)
        for task in unfinished:
            task.cancel()  # rolls its transaction back; the broker redelivers the message
        if unfinished:
            await asyncio.wait(unfinished)
            log(
                logger,
                logging.WARNING,
                "shutdown cancelled in-flight payouts",
                count=len(unfinished),
            )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._handle(message)
        except Exception:
            # The last line of defence (a header nothing can encode, say): never leave a delivery
            # unsettled, which would hold its prefetch slot until the consumer timeout.
            logger.exception(
                "could not route a failed message; returning it to the queue",
                extra={"payouts_fields": {"message_id": message.message_id}},
            )
            await asyncio.sleep(RETURN_PAUSE_SECONDS)
            await _settle(message.nack(requeue=True), message)
        finally:
            self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode_event(message.body)
        except ContractError as error:
            failure = Failure(FailureKind.POISON, "ContractError", str(error)[:500])
            await self._dead_letter(message, failure, None)
            return
        try:
            result = await self._apply_in_place(event)
        except Exception as error:
            failure = failure_of(error)
            if failure.kind is FailureKind.POISON:
                await self._dead_letter(message, failure, event)
                return
            if failure.kind is FailureKind.UNEXPECTED:
                logger.exception(
                    "unexpected error while crediting", extra={"payouts_fields": _fields(event)}
                )
            await self._retry_later(message, failure, event)
            return
        log(
            logger,
            logging.INFO if result.outcome in QUIET_OUTCOMES else logging.WARNING,
            "payout processed",
            **_fields(event),
            outcome=result.outcome.value,
            answer_code=event.answer_code,
            balance_after=str(result.balance_after) if result.balance_after is not None else None,
            lag_ms=round((datetime.now(UTC) - event.received_at).total_seconds() * 1000, 1),
            redelivered=message.redelivered,
        )
        if result.outcome is Outcome.HELD_UNKNOWN_ACCOUNT and result.own_record:
            # Recorded; the dead-letter entry lets an engineer replay it once the wallet exists.
            # A provider's re-send of a held payout is acked: its first delivery is already there.
            failure = Failure(
                FailureKind.BUSINESS, result.outcome.value, "the user's wallet does not exist"
            )
            await self._dead_letter(message, failure, event)
            return
        await _settle(message.ack(), message)

    async def _apply_in_place(self, event: PayoutEvent) -> CreditResult:
        """Retry transient failures briefly, holding the delivery; then let the caller decide."""
        deadline = time.monotonic() + self._settings.worker.in_place_retry_seconds
        delay = FIRST_RETRY_DELAY_SECONDS
        timeout = self._settings.database.acquire_timeout_seconds
        while True:
            try:
                async with self._pool.acquire(timeout=timeout) as conn, conn.transaction():
                    result = await apply_payout(conn, event)
                    if event.report_outcome:
                        report = OutcomeReport(
                            event_id=event.event_id,
                            outcome=result.outcome,
                            balance=result.balance_after,
                        )
                        await send_report(conn, report)
                    return result
            except TRANSIENT_ERRORS as error:
                if time.monotonic() + delay > deadline:
                    raise
                log(
                    logger,
                    logging.WARNING,
                    "transient failure, retrying in place",
                    **_fields(event),
                    error=repr(error),
                    retry_in_seconds=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)

    async def _retry_later(
        self, message: AbstractIncomingMessage, failure: Failure, event: PayoutEvent
    ) -> None:
        """Into the next retry tier, or the dead-letter queue after the last."""
        headers = retry_headers(dict(message.headers or {}), failure)
        step = retry_delay_ms(
            self._topology.retry_delays_seconds,
            headers["x-payouts-attempts"],
            self._settings.broker.retry_jitter,
        )
        if step is None:
            await self._dead_letter(message, failure, event, headers)
            return
        tier, wait_ms = step
        log(
            logger,
            logging.WARNING,
            "delivery failed; retrying later",
            **_fields(event),
            kind=failure.kind.value,
            error=f"{failure.error_type}: {failure.message}",
            attempts=headers["x-payouts-attempts"],
            retry_tier_seconds=tier,
        )
        await self._republish(
            message,
            _copy(message, headers, expiration_ms=wait_ms),
            self._topology.retry_exchange,
            self._topology.retry_routing_key(tier),
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        failure: Failure,
        event: PayoutEvent | None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        counted = headers or retry_headers(dict(message.headers or {}), failure)
        final = dead_letter_headers(counted, message.exchange, message.routing_key)
        copy = _copy(message, final)
        log(
            logger,
            logging.ERROR,
            "message dead-lettered",
            **(_fields(event) if event else {}),
            message_id=message.message_id,
            kind=failure.kind.value,
            error=f"{failure.error_type}: {failure.message}",
            attempts=final["x-payouts-attempts"],
        )
        if await self._republish(message, copy, self._topology.dead_letter_exchange, ""):
            try:
                async with asyncio.timeout(RECORD_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                    await record_dead_letter(conn, copy.body, final, copy.message_id)
            except Exception as error:  # best effort by design: the queue holds the message
                log(
                    logger,
                    logging.WARNING,
                    "dead letter not recorded in Postgres yet; "
                    "payouts dlq records it when it touches the message",
                    error=repr(error),
                )

    async def _republish(
        self, original: AbstractIncomingMessage, copy: aio_pika.Message, exchange: str, key: str
    ) -> bool:
        """Publish `copy`, confirmed, then ack `original`; if the broker will not take it, return
        the original instead (it is redelivered; the worst case is a duplicate, never a loss)."""
        try:
            await self._publisher.publish(copy, exchange=exchange, routing_key=key)
        except BrokerUnavailable as error:
            log(
                logger,
                logging.WARNING,
                "could not re-publish; returning the message instead",
                message_id=original.message_id,
                error=str(error),
            )
            # Paused, so a broker that refuses the copy does not see the original bounce back
            # at once, again and again, until the delivery limit dead-letters it without history.
            await asyncio.sleep(RETURN_PAUSE_SECONDS)
            await _settle(original.nack(requeue=True), original)
            return False
        await _settle(original.ack(), original)
        return True


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], expiration_ms: int | None = None
) -> aio_pika.Message:
    return persistent_message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        expiration=expiration_ms / 1000 if expiration_ms is not None else None,
    )


def _fields(event: PayoutEvent) -> dict[str, str]:
    return {
        "event_id": str(event.event_id),
        "provider_instance": event.provider_instance,
        "transaction_id": event.transaction_id,
    }


async def _settle(action: Awaitable[None], message: AbstractIncomingMessage) -> None:
    """Ack, nack or reject; on a dead channel the broker has already requeued the message."""
    try:
        await action
    except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
        log(
            logger,
            logging.WARNING,
            "could not settle message; the broker will redeliver it",
            message_id=message.message_id,
            error=repr(error),
        )
