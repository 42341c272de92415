"""Outcomes routed to the ingress process that waits for them: three listeners and a worker against
the real RabbitMQ and Postgres, each listener receiving only the reports of its own events."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from prometheus_client import generate_latest

from ingress.outcomes import OWN, SHARED, OutcomeListener
from schema.outcomes import Outcome, new_reply_channel
from schema.settings import DatabaseSettings, Settings, WorkerSettings
from tests.factories import payout_event
from tests.integration.pipeline import worker_running
from tests.metrics_reading import sample_value
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    import asyncpg

    from broker.publisher import ConfirmedPublisher
    from schema.events import PayoutEvent
    from schema.outcomes import OutcomeReport
    from schema.settings import BrokerSettings

EVENTS_PER_LISTENER = 12
WAIT_SECONDS = 10.0
REPORTS_RECEIVED = "payouts_ingress_outcome_reports_received_total"


@pytest.fixture
def settings(broker_settings: BrokerSettings, database_url: str) -> Settings:
    return Settings(
        database=DatabaseSettings(url=database_url, pool_max_size=4),
        broker=broker_settings,
        worker=WorkerSettings(prefetch=16, shutdown_grace_seconds=5, status_port=0),
    )


@pytest.fixture
async def listeners(settings: Settings) -> AsyncIterator[list[OutcomeListener]]:
    """Three ingress processes' listeners, as many as `payouts ingress --processes 3` holds."""
    started = [OutcomeListener(settings.database) for _ in range(3)]
    for listener in started:
        listener.start()
    try:

        async def all_listening() -> bool:
            return all(listener.listening for listener in started)

        await wait_until(all_listening, "three outcome listeners")
        yield started
    finally:
        for listener in started:
            await listener.close()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[None]:
    async with worker_running(settings):
        yield


def waiting_event() -> PayoutEvent:
    return payout_event(report_outcome=True)


async def publish_and_wait(
    publisher: ConfirmedPublisher,
    waiting: Sequence[tuple[OutcomeListener, PayoutEvent, str | None]],
) -> list[OutcomeReport]:
    """Publish each event with its `reply_to` while its listener expects it, as the ingress does,
    and return the reports in the same order."""
    with contextlib.ExitStack() as expecting:
        futures = [
            expecting.enter_context(listener.expecting(event.event_id))
            for listener, event, _ in waiting
        ]
        await asyncio.gather(
            *(publisher.publish_event(event, reply_to=reply_to) for _, event, reply_to in waiting)
        )
        return await asyncio.gather(
            *(
                listener.wait(future, WAIT_SECONDS)
                for (listener, _, _), future in zip(waiting, futures, strict=True)
            )
        )


async def after_every_earlier_report(
    publisher: ConfirmedPublisher, listeners: list[OutcomeListener]
) -> None:
    """Once every listener has the report of one more event, sent to all of them on the shared
    channel, it has every report committed before it: Postgres delivers in commit order."""
    (marker,) = await publish_and_wait(publisher, [(listeners[0], waiting_event(), None)])
    assert marker.outcome is Outcome.CREDITED

    async def all_received() -> bool:
        return all(listener.reports_received[SHARED] == 1 for listener in listeners)

    await wait_until(all_received, "the shared report at every listener")


def reports_counted(channel: str) -> float:
    return sample_value(generate_latest().decode(), REPORTS_RECEIVED, channel=channel)


@pytest.mark.usefixtures("worker")
async def test_each_process_receives_only_the_outcomes_of_its_own_events(
    listeners: list[OutcomeListener], publisher: ConfirmedPublisher
) -> None:
    counted_before = reports_counted(OWN)
    waiting = [
        (listener, waiting_event(), listener.channel)
        for _ in range(EVENTS_PER_LISTENER)
        for listener in listeners
    ]
    reports = await publish_and_wait(publisher, waiting)
    assert [report.event_id for report in reports] == [event.event_id for _, event, _ in waiting]
    assert {report.outcome for report in reports} == {Outcome.CREDITED}
    await after_every_earlier_report(publisher, listeners)
    for listener in listeners:
        assert listener.reports_received == Counter({OWN: EVENTS_PER_LISTENER, SHARED: 1})
    assert reports_counted(OWN) - counted_before == len(waiting)


@pytest.mark.usefixtures("worker")
async def test_an_event_from_an_earlier_ingress_is_reported_on_the_shared_channel(
    listeners: list[OutcomeListener], publisher: ConfirmedPublisher
) -> None:
    """An ingress of an earlier release sets no `reply_to` and listens on the shared channel
    only; every listener of this release hears it there during the upgrade."""
    (report,) = await publish_and_wait(publisher, [(listeners[1], waiting_event(), None)])
    assert report.outcome is Outcome.CREDITED

    async def all_received() -> bool:
        return all(listener.reports_received == Counter({SHARED: 1}) for listener in listeners)

    await wait_until(all_received, "the report at every listener, on the shared channel")


@pytest.mark.usefixtures("worker")
async def test_an_event_of_a_process_gone_since_is_credited_and_reported_to_no_one(
    listeners: list[OutcomeListener], publisher: ConfirmedPublisher, pool: asyncpg.Pool
) -> None:
    """A restarted process listens on a new channel; what its predecessor published is still
    credited, and its report goes to a channel nobody listens on."""
    orphan = waiting_event()
    await publisher.publish_event(orphan, reply_to=new_reply_channel())

    async def credited() -> bool:
        async with pool.acquire() as conn:
            status: str | None = await conn.fetchval(
                "SELECT status FROM payouts WHERE transaction_id = $1", orphan.transaction_id
            )
        return status == "credited"

    await wait_until(credited, "the orphan's payout credited")
    await after_every_earlier_report(publisher, listeners)
    for listener in listeners:
        assert listener.reports_received == Counter({SHARED: 1})
