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

from schema.broker import connect_when_available
from schema.events import ContractError, PayoutEvent, decode_event
from schema.logs import log
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
)
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

    async def run(self, stop: asyncio.Event) -> None:
        connection = await connect_when_available(self._settings.broker, "payouts-worker")
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._settings.worker.prefetch)
            await declare(channel, self._topology)
            queue = await channel.get_queue(self._topology.work_queue, ensure=False)
            consumer_tag = await queue.consume(self._on_message)
            log(logger, logging.INFO, "worker consuming", queue=self._topology.work_queue)
            await stop.wait()
            # Stop taking work, let what is in flight finish within the bound, then close.
            await queue.cancel(consumer_tag)
            await self._drain(self._settings.worker.shutdown_grace_seconds)
        finally:
            await connection.close()
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
            await _settle(message.nack(requeue=True), message)
            return
        log(
            logger,
            logging.INFO,
            "payout processed",
            **_event_fields(event),
            outcome=result.outcome.value,
            answer_code=event.answer_code,
            balance_after=str(result.balance_after) if result.balance_after is not None else None,
            lag_ms=round((datetime.now(UTC) - event.received_at).total_seconds() * 1000, 1),
            redelivered=message.redelivered,
        )
        await _settle(message.ack(), message)

    async def _apply_with_retries(self, event: PayoutEvent) -> CreditResult | None:
        """Retry transient database failures in place, holding the message, up to the bound.

        Holding the delivery (instead of requeueing it) keeps a database outage from burning
        through the queue's delivery limit; None means the bound ran out and it must be requeued.
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
                        "transient failures outlasted the retry bound; requeued",
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
