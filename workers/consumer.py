"""Consume payout events, credit each in its own Postgres transaction, ack only after commit."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aio_pika
import asyncpg

from schema.broker import BrokerUnavailable, ConfirmedPublisher, connect_when_available
from schema.events import ContractError, PayoutEvent, decode_event
from schema.logs import log
from schema.outcomes import Outcome
from schema.topology import Topology, declare
from workers.crediting import CreditResult, apply_payout

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from aio_pika.abc import AbstractIncomingMessage

    from schema.settings import Settings

__all__ = ["TRANSIENT_ERRORS", "Worker"]

logger = logging.getLogger(__name__)

# Failures that say nothing about the message: the database is away, busy, or lost a race.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a failover in progress
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
)
# Counts how often a message was re-published after outlasting the in-place retries; ours,
# because the broker ignores client-set x-death headers (rabbitmq-server #10709).
REQUEUES_HEADER = "x-payouts-requeues"
# Outcomes that need no one's attention; the others are logged as warnings.
QUIET_OUTCOMES = frozenset({Outcome.CREDITED, Outcome.DUPLICATE})
FIRST_RETRY_DELAY_SECONDS = 0.2
MAX_RETRY_DELAY_SECONDS = 15.0
# An unexpected error is a bug or a poison message; pausing before the requeue keeps it from
# spinning, and the queue's delivery limit dead-letters it if it never succeeds.
UNEXPECTED_ERROR_PAUSE_SECONDS = 1.0


class Worker:
    """One consumer with `prefetch` deliveries in flight, each a task of its own."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._topology = Topology(settings.broker.namespace)
        self._in_flight: set[asyncio.Task[None]] = set()
        # Its own connection: flow control on a publishing connection must not delay our acks.
        self._publisher = ConfirmedPublisher(settings.broker, "worker-publisher")

    async def run(self, stop: asyncio.Event) -> None:
        self._publisher.start()
        connection = await connect_when_available(self._settings.broker, "worker")
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._settings.worker.prefetch)
            queue = (await declare(channel, self._topology)).work_queue
            consumer_tag = await queue.consume(self._on_message)
            log(logger, logging.INFO, "worker consuming", queue=self._topology.work_queue)
            await stop.wait()
            # Stop taking work, let what is in flight finish within the bound, then close.
            await queue.cancel(consumer_tag)
            await self._drain(self._settings.worker.shutdown_grace_seconds)
        finally:
            await connection.close()
            await self._publisher.close()
        log(logger, logging.INFO, "worker stopped")

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
        finally:
            self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode_event(message.body)
        except ContractError as error:
            log(
                logger,
                logging.ERROR,
                "undecodable message dead-lettered",
                message_id=message.message_id,
                error=str(error)[:500],
            )
            await _settle(message.reject(requeue=False), message)
            return
        try:
            result = await self._apply_with_retries(event)
        except Exception:
            logger.exception(
                "unexpected error while crediting; message requeued",
                extra={"payouts_fields": _event_fields(event)},
            )
            await asyncio.sleep(UNEXPECTED_ERROR_PAUSE_SECONDS)
            await _settle(message.nack(requeue=True), message)
            return
        if result is None:
            await self._requeue_at_tail(message, event)
            return
        log(
            logger,
            logging.INFO if result.outcome in QUIET_OUTCOMES else logging.WARNING,
            "payout processed",
            **_event_fields(event),
            outcome=result.outcome.value,
            answer_code=event.answer_code,
            balance_after=str(result.balance_after) if result.balance_after is not None else None,
            lag_ms=round((datetime.now(UTC) - event.received_at).total_seconds() * 1000, 1),
            redelivered=message.redelivered,
        )
        await _settle(message.ack(), message)

    async def _requeue_at_tail(self, message: AbstractIncomingMessage, event: PayoutEvent) -> None:
        """Re-publish, confirmed, then ack: the copy starts with a fresh delivery count.

        Returning the message instead would count against the queue's delivery limit, and a long
        database outage would then dead-letter payouts that were already accepted.
        """
        headers = dict(message.headers or {})
        requeues = headers.get(REQUEUES_HEADER, 0)
        headers[REQUEUES_HEADER] = (requeues if isinstance(requeues, int) else 0) + 1
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type=message.content_type,
            message_id=message.message_id,
            timestamp=message.timestamp,
            type=message.type,
        )
        try:
            await self._publisher.publish(copy)
        except BrokerUnavailable as error:
            log(
                logger,
                logging.WARNING,
                "could not re-publish; returning the message instead",
                **_event_fields(event),
                error=str(error),
            )
            await _settle(message.nack(requeue=True), message)
            return
        await _settle(message.ack(), message)

    async def _apply_with_retries(self, event: PayoutEvent) -> CreditResult | None:
        """Retry transient database failures in place, holding the message, up to the bound.

        None means the bound ran out: the caller re-publishes the message, so holding it never
        comes near the broker's consumer timeout (30 minutes by default).
        """
        deadline = time.monotonic() + self._settings.worker.transient_retry_max_seconds
        delay = FIRST_RETRY_DELAY_SECONDS
        timeout = self._settings.database.acquire_timeout_seconds
        while True:
            try:
                async with self._pool.acquire(timeout=timeout) as conn, conn.transaction():
                    return await apply_payout(conn, event)
            except TRANSIENT_ERRORS as error:
                if time.monotonic() + delay > deadline:
                    log(
                        logger,
                        logging.ERROR,
                        "transient failures outlasted the retry bound; re-publishing the message",
                        **_event_fields(event),
                        error=repr(error),
                    )
                    return None
                log(
                    logger,
                    logging.WARNING,
                    "transient failure, retrying",
                    **_event_fields(event),
                    error=repr(error),
                    retry_in_seconds=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)


def _event_fields(event: PayoutEvent) -> dict[str, str]:
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
