"""Wait for the worker's outcome of an event: one Postgres connection per process LISTENs on the
process's own outcome channel, which its events name in their `reply_to`, and wakes the request
waiting for each reported event.

Postgres delivers a NOTIFY only when the crediting transaction commits, so an answer built from a
report is never ahead of the record. Notifications sent while this connection is down are lost:
those requests time out and answer "try again", and the provider's retry is answered from the
record, which is why nothing here needs to be durable.

It also listens on the shared `OUTCOME_CHANNEL`, where workers of an earlier release report every
event during a rolling upgrade; once every worker runs this release, nothing is sent there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING

from database.connection import connect
from ingress import metrics
from schema.errors import ServiceUnavailable
from schema.logs import log, redacted_url
from schema.outcomes import OUTCOME_CHANNEL, decode_reports, new_reply_channel

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

    from schema.outcomes import OutcomeReport
    from schema.settings import DatabaseSettings

__all__ = ["LISTENER_APPLICATION_NAME", "OWN", "SHARED", "OutcomeListener", "OutcomeUnavailable"]

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 2.0
# A silently dead connection (a cut network) reports nothing: ask it something this often.
PING_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 3.0
# How an operator (or a test) finds these connections in pg_stat_activity.
LISTENER_APPLICATION_NAME = "payouts-outcome-listener"
# Which channel a notification came on, as a metric label.
OWN = "own"
SHARED = "shared"


class OutcomeUnavailable(ServiceUnavailable):
    """No outcome will arrive for this request; `reason` is one of NOT_LISTENING, TIMED_OUT and
    LISTENER_LOST, fit for a metric label."""

    NOT_LISTENING = "not_listening"
    TIMED_OUT = "timed_out"
    LISTENER_LOST = "listener_lost"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class OutcomeListener:
    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        # Kept through reconnects: events published before one still name it.
        self.channel = new_reply_channel()
        # Reports received on each channel (OWN, SHARED), this listener's share of the metric.
        self.reports_received: Counter[str] = Counter()
        self._waiting: dict[UUID, asyncio.Future[OutcomeReport]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="outcome-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def expecting(self, event_id: UUID) -> Iterator[asyncio.Future[OutcomeReport]]:
        """Register interest before publishing: the outcome can be committed before the publish
        call returns."""
        future: asyncio.Future[OutcomeReport] = asyncio.get_running_loop().create_future()
        self._waiting[event_id] = future
        try:
            yield future
        finally:
            self._waiting.pop(event_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: an unawaited failure is not worth a warning

    async def wait(
        self, future: asyncio.Future[OutcomeReport], within_seconds: float
    ) -> OutcomeReport:
        if not self.listening and not future.done():
            raise OutcomeUnavailable(
                OutcomeUnavailable.NOT_LISTENING,
                "not listening for outcomes: the database is unreachable",
            )
        try:
            return await asyncio.wait_for(future, within_seconds)
        except TimeoutError:
            raise OutcomeUnavailable(
                OutcomeUnavailable.TIMED_OUT, f"no outcome within {within_seconds} s"
            ) from None

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except Exception as error:  # whatever broke the connection, listen again
                log(
                    logger,
                    logging.WARNING,
                    "not listening for outcomes; reconnecting",
                    database=redacted_url(self._settings.url),
                    error=repr(error),
                    retry_in_seconds=RECONNECT_SECONDS,
                )
            finally:
                self._lost()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_once(self) -> None:
        conn = await connect(
            self._settings.url,
            timeout=self._settings.connect_timeout_seconds,
            server_settings={"application_name": LISTENER_APPLICATION_NAME},
        )
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _: closed.set())
        try:
            await conn.add_listener(self.channel, self._on_notification)
            await conn.add_listener(OUTCOME_CHANNEL, self._on_notification)
            self._listening.set()
            log(
                logger,
                logging.INFO,
                "listening for outcomes",
                channel=self.channel,
                shared_channel=OUTCOME_CHANNEL,
            )
            while True:
                # A closed connection wakes this at once, so no request waits on a listener that
                # is gone; the ping finds one that hangs without closing.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), PING_SECONDS)
                if closed.is_set():
                    raise ConnectionError("the listening connection was closed")
                await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_SECONDS)
        finally:
            conn.terminate()

    def _lost(self) -> None:
        self._listening.clear()
        # Answer at once rather than at the timeout: nothing will wake these requests now.
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(
                    OutcomeUnavailable(
                        OutcomeUnavailable.LISTENER_LOST, "stopped listening for outcomes"
                    )
                )

    def _on_notification(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        received_on = OWN if channel == self.channel else SHARED
        metrics.OUTCOME_NOTIFICATIONS.labels(received_on).inc()
        try:
            reports, unreadable = decode_reports(str(payload))
        except ValueError as error:
            log(logger, logging.ERROR, "unreadable outcome notification", error=str(error))
            return
        metrics.OUTCOME_REPORTS.labels(received_on).inc(len(reports))
        self.reports_received[received_on] += len(reports)
        for why in unreadable:
            # Its request, if this process holds it, answers "try again" at its timeout; the
            # provider's retry is answered from the record.
            log(logger, logging.ERROR, "unreadable outcome report skipped", error=why[:500])
        for report in reports:
            future = self._waiting.get(report.event_id)
            if future is not None and not future.done():
                future.set_result(report)
