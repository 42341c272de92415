"""Consume payout events, one per message or many in an envelope, credit them in batches of one
Postgres transaction each, and ack a delivery only after each of its events is settled.

Whatever fails is moved (workers/moves.py) before the original is acked, so nothing leaves the
work queue without being credited, recorded, waiting in a retry tier, or in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from broker.connection import BROKER_ERRORS, connect_when_available
from broker.deliveries import Delivery, OpenDeliveries
from broker.publisher import ConfirmedPublisher
from broker.subscription import subscribe
from database.connection import dropped_if_read_only
from schema.logs import log, log_exception
from schema.outcomes import Outcome, OutcomeReport
from schema.topology import Topology
from workers import metrics
from workers.batch_crediting import FundingAccounts, apply_batch
from workers.batching import Batches
from workers.envelope_deliveries import DeliveredEvent, EventDeliveries
from workers.failures import TRANSIENT_ERRORS, Failure, FailureKind, failure_of
from workers.moves import RETURN_PAUSE_SECONDS, MessageMover, move_finish_seconds
from workers.outcome_reports import send_reports
from workers.queue_depths import sample_queue_depths
from workers.readiness import WorkerReadiness
from workers.status_server import StatusServer
from workers.stopping import unless_stopped

if TYPE_CHECKING:
    import asyncpg

    from broker.connection import RobustConnection
    from broker.subscription import Subscription
    from schema.events import PayoutEvent
    from schema.settings import Settings
    from workers.crediting import CreditResult

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

# Outcomes that need no one's attention; the others are logged as warnings.
QUIET_OUTCOMES = frozenset({Outcome.CREDITED, Outcome.DUPLICATE})
HELD_FAILURE = Failure(
    FailureKind.BUSINESS, Outcome.HELD_UNKNOWN_ACCOUNT.value, "the user's wallet does not exist"
)
FIRST_RETRY_DELAY_SECONDS = 0.1
MAX_RETRY_DELAY_SECONDS = 2.0
WATCHDOG_INTERVAL_SECONDS = 1.0
CANCEL_TIMEOUT_SECONDS = 5.0


def stop_seconds(settings: Settings) -> float:
    """The longest a worker takes to stop once told to, before closing its connections:
    cancelling its consumer, the grace period, and a message move let finish."""
    return (
        CANCEL_TIMEOUT_SECONDS
        + settings.worker.shutdown_grace_seconds
        + move_finish_seconds(settings.broker)
    )


class Worker:
    """One consumer with `prefetch` deliveries in flight, credited in up to `concurrent_batches`
    batches at a time."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        publisher: ConfirmedPublisher | None = None,
        status: StatusServer | None = None,
    ) -> None:
        """`publisher` re-publishes retries and dead letters (by default one of its own); the
        worker starts it and closes it. `status`, the status port, may be open already (while
        the pool waited for Postgres); the worker then answers its /readyz, and closes it."""
        self._settings = settings
        self._pool = pool
        self._funding = FundingAccounts()
        self._topology = Topology.from_settings(settings.broker)
        worker = settings.worker
        self._batches = Batches(
            self._settle_batch,
            size=worker.batch_size,
            linger_seconds=worker.batch_linger_seconds,
            concurrent=worker.concurrent_batches,
        )
        self._deliveries = EventDeliveries(OpenDeliveries())
        # Its own connection: flow control on a publishing connection must not delay our acks.
        self._publisher = publisher or ConfirmedPublisher(settings.broker, "worker-publisher")
        self._mover = MessageMover(settings.broker, pool, self._publisher, self._deliveries)
        self._readiness = WorkerReadiness(pool)
        if status is None:
            status = StatusServer(
                settings.worker.status_host, settings.worker.status_port, self._readiness.report
            )
        status.answer_readiness_with(self._readiness.report)
        self.status = status

    async def run(self, stop: asyncio.Event) -> int:
        """Consume until `stop` is set (exit code 0) or no consumer was held for too long (1)."""
        if self.status.port is None:
            await self.status.start()
        self._publisher.start()
        connection = await unless_stopped(
            connect_when_available(self._settings.broker, "worker"), stop
        )
        if connection is None:
            await self._publisher.close()
            await self.status.close()
            log(logger, logging.INFO, "worker stopped before the broker answered", exit_code=0)
            return 0
        sampler: asyncio.Task[None] | None = None
        try:
            subscription = await subscribe(
                connection, self._topology, self._settings.worker.prefetch, self._on_delivery
            )
            self._readiness.set_consuming(True)
            log(logger, logging.INFO, "worker consuming", queue=self._topology.work_queue)
            sampler = asyncio.create_task(
                sample_queue_depths(
                    connection, self._topology, self._settings.worker.queue_sample_seconds
                ),
                name="queue-sampler",
            )
            exit_code = await self._watch(stop, connection, subscription)
            # Stop taking work, let what is in flight finish within the bound, then close.
            # Bounded: on a dead connection the cancel would wait for a reconnect.
            with contextlib.suppress(*BROKER_ERRORS, TimeoutError):
                await asyncio.wait_for(subscription.cancel(), CANCEL_TIMEOUT_SECONDS)
            await self._drain(self._settings.worker.shutdown_grace_seconds)
        finally:
            self._readiness.set_consuming(False)
            if sampler is not None:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            await connection.close()
            await self._publisher.close()
            await self.status.close()
        log(logger, logging.INFO, "worker stopped", exit_code=exit_code)
        return exit_code

    async def _watch(
        self, stop: asyncio.Event, connection: RobustConnection, subscription: Subscription
    ) -> int:
        """Wait for `stop`; give up (1) after `no_consumer_exit_seconds` without a live consumer."""
        limit = self._settings.worker.no_consumer_exit_seconds
        since: float | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCHDOG_INTERVAL_SECONDS)
            consuming = connection.connected.is_set() and subscription.active
            self._readiness.set_consuming(consuming)
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
        self._batches.start_all()  # credited now, not left waiting for a batch to finish
        if not self._batches.running:
            return
        _, unfinished = await asyncio.wait(self._batches.running, timeout=grace_seconds)
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

    def _on_delivery(self, message: Delivery) -> None:
        """Collect the delivery's events into the next batches (`batch_size` counts events);
        their batches' tasks settle it."""
        for part in self._deliveries.received(message):
            self._batches.add(part)

    async def _settle_batch(self, batch: list[DeliveredEvent]) -> None:
        try:
            await self._handle(batch)
        except Exception:
            # The last line of defence (a header nothing can encode, say): never leave a delivery
            # unsettled, which would hold its prefetch slot until the consumer timeout. Each is
            # returned once, whole: its events committed meanwhile come back as duplicates.
            unsettled = [part for part in batch if self._deliveries.is_open(part)]
            log_exception(
                logger,
                "could not route failed messages; returning them to the queue",
                message_ids=list(dict.fromkeys(p.delivery.message_id for p in unsettled)),
            )
            await asyncio.sleep(RETURN_PAUSE_SECONDS)
            for part in unsettled:
                await self._deliveries.returned(part)

    async def _handle(self, batch: list[DeliveredEvent]) -> None:
        decoded = [(part, event) for part in batch if (event := part.event) is not None]
        try:
            await self._credit(decoded)
        finally:
            # After the batch's payouts: each move waits for the broker's confirm, and neither
            # the credits nor the answers their providers wait for should wait behind it.
            for part in batch:
                if part.problem is not None:
                    failure = Failure(FailureKind.POISON, "ContractError", str(part.problem)[:500])
                    await self._mover.dead_letter(part, failure)

    async def _credit(self, decoded: list[tuple[DeliveredEvent, PayoutEvent]]) -> None:
        if len(decoded) == 1:
            await self._handle_one(*decoded[0])
            return
        if not decoded:
            return
        try:
            results = await self._apply_in_place(decoded)
        except Exception as error:
            failure = failure_of(error)
            if failure.kind is FailureKind.TRANSIENT:
                # The database stayed away or busy through the in-place retries, which says
                # nothing about any one payout: each waits in a retry tier now, instead of
                # holding its delivery through another round of retries, one transaction each.
                what = "batch failed on a transient error; its payouts wait in a retry tier"

                async def settle(part: DeliveredEvent, _: PayoutEvent, /) -> None:
                    await self._mover.retry_later(part, failure)

            else:
                # One payout the database refuses: credit each on its own, so that the others
                # are not held back and every failure is routed on its own merits. One at a
                # time, in batch order, so that each gets the outcome it would have had alone
                # (which of two payouts to a missing wallet is held, which balance comes first).
                what = "batch failed; crediting its payouts one by one"
                settle = self._handle_one
            log(logger, logging.WARNING, what, size=len(decoded), error=repr(error))
        else:
            committed_at = datetime.now(UTC)
            held = [
                part
                for (part, event), result in zip(decoded, results, strict=True)
                if self._log_result(part, event, result, committed_at)
            ]
            # The committed payouts are settled first: a held one's move to the dead-letter queue
            # waits for the broker, and the others' acks (and this batch's slot) need not.
            held_parts = set(held)
            await self._deliveries.finished(part for part, _ in decoded if part not in held_parts)
            for part in held:
                await self._mover.dead_letter(part, HELD_FAILURE)
            return
        # Every one settles before the last line of defence may requeue the rest.
        errors: list[Exception] = []
        for part, event in decoded:
            try:
                await settle(part, event)
            except Exception as failed:
                errors.append(failed)
        if errors:
            raise errors[0]

    async def _handle_one(self, part: DeliveredEvent, event: PayoutEvent) -> None:
        try:
            (result,) = await self._apply_in_place([(part, event)])
        except Exception as error:
            failure = failure_of(error)
            if failure.kind is FailureKind.POISON:
                await self._mover.dead_letter(part, failure)
                return
            if failure.kind is FailureKind.UNEXPECTED:
                log_exception(logger, "unexpected error while crediting", **event.log_fields())
            await self._mover.retry_later(part, failure)
            return
        if self._log_result(part, event, result, datetime.now(UTC)):
            await self._mover.dead_letter(part, HELD_FAILURE)
        else:
            await self._deliveries.finished([part])

    def _log_result(
        self,
        part: DeliveredEvent,
        event: PayoutEvent,
        result: CreditResult,
        committed_at: datetime,
    ) -> bool:
        """Log and count an outcome committed at `committed_at` (one clock reading per batch).
        True when the payout was newly held: recorded, and its delivery goes to the dead-letter
        queue, from where an engineer replays it once the wallet exists (a provider's re-send of
        a held payout is acked: its first delivery is already there)."""
        lag_seconds = (committed_at - event.received_at).total_seconds()
        metrics.payouts_of(event.provider_instance, result.outcome.value).inc()
        metrics.lag_of(event.provider_instance).observe(max(lag_seconds, 0.0))
        log(
            logger,
            logging.INFO if result.outcome in QUIET_OUTCOMES else logging.WARNING,
            "payout processed",
            **event.log_fields(),
            outcome=result.outcome.value,
            answer_code=event.answer_code,
            balance_after=str(result.balance_after) if result.balance_after is not None else None,
            lag_ms=round(lag_seconds * 1000, 1),
            redelivered=part.delivery.redelivered,
        )
        return result.outcome is Outcome.HELD_UNKNOWN_ACCOUNT and result.own_record

    async def _apply_in_place(
        self, decoded: list[tuple[DeliveredEvent, PayoutEvent]]
    ) -> list[CreditResult]:
        """Credit the events in one transaction, retrying transient failures briefly while holding
        the deliveries; then let the caller decide."""
        deadline = time.monotonic() + self._settings.worker.in_place_retry_seconds
        delay = FIRST_RETRY_DELAY_SECONDS
        while True:
            try:
                return await self._apply_once(decoded)
            except TRANSIENT_ERRORS as error:
                if time.monotonic() + delay > deadline:
                    raise
                metrics.RETRIES.labels("in_place").inc()
                log(
                    logger,
                    logging.WARNING,
                    "transient failure, retrying in place",
                    **(
                        decoded[0][1].log_fields()
                        if len(decoded) == 1
                        else {"batch_size": len(decoded)}
                    ),
                    error=repr(error),
                    retry_in_seconds=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)

    async def _apply_once(
        self, decoded: list[tuple[DeliveredEvent, PayoutEvent]]
    ) -> list[CreditResult]:
        events = [event for _, event in decoded]
        timeout = self._settings.database.acquire_timeout_seconds
        try:
            async with self._pool.acquire(timeout=timeout) as conn, dropped_if_read_only(conn):
                started = time.perf_counter()
                async with conn.transaction():
                    results = await apply_batch(conn, events, self._funding)
                    await send_reports(
                        conn,
                        [
                            (
                                part.delivery.reply_to,
                                OutcomeReport(
                                    event_id=event.event_id,
                                    outcome=result.outcome,
                                    balance=result.balance_after,
                                    currency=result.recorded_currency,
                                ),
                            )
                            for (part, event), result in zip(decoded, results, strict=True)
                            if event.report_outcome
                        ],
                    )
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                metrics.BATCH_SIZE.observe(len(events))
                return results
        except Exception:
            # A remembered funding account id may be the cause: one that a failover to a replica
            # without its commit took away fails every batch paying from it until looked up again.
            self._funding.forget()
            raise
