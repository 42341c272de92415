"""Moving a failed delivery into the retry tiers or the dead-letter queue: its copy is published
and confirmed before the original is acked, so a move loses nothing (docs/failure-handling.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from broker.publisher import persistent_message
from schema.errors import BrokerUnavailable
from schema.logs import log
from schema.topology import Topology
from workers import metrics
from workers.dead_letters import record_dead_letter
from workers.failures import dead_letter_headers, retry_delay_ms, retry_headers

if TYPE_CHECKING:
    import asyncpg
    from prometheus_client import Counter

    from broker.publisher import ConfirmedPublisher, OutgoingMessage
    from schema.settings import BrokerSettings
    from workers.envelope_deliveries import DeliveredEvent, EventDeliveries, SingleMessage
    from workers.failures import Failure

__all__ = ["RETURN_PAUSE_SECONDS", "MessageMover", "move_finish_seconds"]

logger = logging.getLogger(__name__)

# Before returning a message we could not route, so it cannot bounce back at once.
RETURN_PAUSE_SECONDS = 1.0
# Recording a dead letter in Postgres is for review; it must not hold up the queue when the
# database is the reason for the failure.
RECORD_TIMEOUT_SECONDS = 2.0
# Beyond its publish's own timeout, what a retry or dead-letter move under way at a shutdown may
# still take: the pause before returning a refused message, and the ack or nack.
MOVE_SETTLE_SECONDS = 4.0


def move_finish_seconds(broker: BrokerSettings) -> float:
    """How long a shutdown lets a retry or dead-letter move under way finish, past the grace
    period for the payouts in flight."""
    return broker.publish_timeout_seconds + RETURN_PAUSE_SECONDS + MOVE_SETTLE_SECONDS


class MessageMover:
    """Moves events out of the work queue through `publisher`, each as a single-event message,
    settling their deliveries through `deliveries`, and records dead letters in Postgres through
    `pool`."""

    def __init__(
        self,
        broker: BrokerSettings,
        pool: asyncpg.Pool,
        publisher: ConfirmedPublisher,
        deliveries: EventDeliveries,
    ) -> None:
        self._broker = broker
        self._pool = pool
        self._publisher = publisher
        self._deliveries = deliveries
        self._topology = Topology.from_settings(broker)
        self._move_finish_seconds = move_finish_seconds(broker)

    async def retry_later(self, part: DeliveredEvent, failure: Failure) -> None:
        """Into the next retry tier, or the dead-letter queue after the last."""
        message = part.as_message()
        headers = retry_headers(dict(message.headers), failure)
        step = retry_delay_ms(
            self._topology.retry_delays_seconds,
            headers["x-payouts-attempts"],
            self._broker.retry_jitter,
        )
        if step is None:
            await self.dead_letter(part, failure, headers)
            return
        tier, wait_ms = step
        metrics.RETRIES.labels(str(tier)).inc()
        log(
            logger,
            logging.WARNING,
            "delivery failed; retrying later",
            **part.log_fields(),
            kind=failure.kind.value,
            error=f"{failure.error_type}: {failure.message}",
            attempts=headers["x-payouts-attempts"],
            retry_tier_seconds=tier,
        )
        await self._republish(
            part,
            _copy(message, headers, expiration_ms=wait_ms),
            self._topology.retry_exchange,
            self._topology.retry_routing_key(tier),
        )

    async def dead_letter(
        self, part: DeliveredEvent, failure: Failure, headers: dict[str, Any] | None = None
    ) -> None:
        """Into the dead-letter queue, recorded in Postgres for review; `headers`, when given,
        already count this failure (the tiers ran out)."""
        message = part.as_message()
        counted = headers or retry_headers(dict(message.headers), failure)
        final = dead_letter_headers(counted, part.delivery.exchange, part.delivery.routing_key)
        copy = _copy(message, final)
        log(
            logger,
            logging.ERROR,
            "message dead-lettered",
            **part.log_fields(),
            message_id=message.message_id,
            kind=failure.kind.value,
            error=f"{failure.error_type}: {failure.message}",
            attempts=final["x-payouts-attempts"],
        )
        moved = await self._republish(
            part,
            copy,
            self._topology.dead_letter_exchange,
            "",
            counted_in=metrics.DEAD_LETTERED.labels(failure.kind.value, failure.error_type),
        )
        if moved:
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
        self,
        original: DeliveredEvent,
        copy: OutgoingMessage,
        exchange: str,
        key: str,
        counted_in: Counter | None = None,
    ) -> bool:
        """Publish `copy`, confirmed, then count `original` as moved on (its delivery is acked
        once none of its events is left) and the move in `counted_in`; if the broker will not
        take it, return the delivery instead (it is redelivered; the worst case is a duplicate,
        never a loss).

        A shutdown's cancel lets both finish first, within `move_finish_seconds`: stopped between
        them, the broker would keep the copy and redeliver the original, two live messages for
        one payout."""
        if not self._deliveries.is_open(original):
            # The broker has requeued the delivery already (its channel closed, or another of its
            # events returned it): a copy would be a second live one.
            log(
                logger,
                logging.WARNING,
                "delivery closed or returned; not re-publishing, the broker redelivers it",
                message_id=copy.message_id,
            )
            return False
        move = asyncio.create_task(
            self._publish_then_ack(original, copy, exchange, key, counted_in)
        )
        try:
            return await asyncio.shield(move)
        except asyncio.CancelledError:
            await self._let_finish(move, original, exchange)
            raise

    async def _let_finish(
        self, move: asyncio.Task[bool], original: DeliveredEvent, exchange: str
    ) -> None:
        """Wait for a move the caller was cancelled in, within its bound; then cut it short: the
        broker redelivers the original (beside its copy, if that was confirmed: a duplicate,
        never a loss)."""
        _, unfinished = await asyncio.wait([move], timeout=self._move_finish_seconds)
        if unfinished:
            move.cancel()
            await asyncio.wait([move])
            log(
                logger,
                logging.WARNING,
                "shutdown cut a message move short; the broker redelivers the original",
                message_id=original.delivery.message_id,
                exchange=exchange,
                seconds=self._move_finish_seconds,
            )
        elif not move.cancelled() and (error := move.exception()) is not None:
            log(
                logger,
                logging.ERROR,
                "message move failed during shutdown; the broker redelivers the original",
                message_id=original.delivery.message_id,
                exchange=exchange,
                error=repr(error),
            )

    async def _publish_then_ack(
        self,
        original: DeliveredEvent,
        copy: OutgoingMessage,
        exchange: str,
        key: str,
        counted_in: Counter | None,
    ) -> bool:
        try:
            await self._publisher.publish(copy, exchange=exchange, routing_key=key)
        except BrokerUnavailable as error:
            log(
                logger,
                logging.WARNING,
                "could not re-publish; returning the message instead",
                message_id=copy.message_id,
                error=str(error),
            )
            # Paused, so a broker that refuses the copy does not see the original bounce back
            # at once, again and again, until the delivery limit dead-letters it without history.
            await asyncio.sleep(RETURN_PAUSE_SECONDS)
            await self._deliveries.returned(original)
            return False
        await self._deliveries.finished([original])
        if counted_in is not None:
            counted_in.inc()
        return True


def _copy(
    message: SingleMessage, headers: dict[str, Any], expiration_ms: int | None = None
) -> OutgoingMessage:
    return persistent_message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        reply_to=message.reply_to,  # its outcome may still be awaited
        expiration=expiration_ms / 1000 if expiration_ms is not None else None,
    )
