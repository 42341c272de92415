"""The ingress gathers callbacks into envelopes, against the real RabbitMQ and Postgres: each answer
waits for the confirm of its own message, and a message the broker refuses, returns or leaves
unconfirmed answers every request in it "try again", whose retries are credited once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import asyncpg
import pytest
from prometheus_client import generate_latest

from ingress.outcomes import OWN, SHARED
from schema.envelopes import ENVELOPE_TYPE, decode_envelope
from schema.events import EVENT_TYPE, decode_event
from schema.logs import logged_fields
from schema.topology import ROUTING_KEY, Topology
from tests.books import assert_books_balance
from tests.broker_admin import refusing_queue
from tests.integration.pipeline import AIGAME, AIGAME_KEY, Pipeline, pipeline, pipeline_settings
from tests.integration.test_ingress import CALLBACK, queued_messages, signed
from tests.integration.test_outcome_answers import payout
from tests.integration.test_outcome_routing import reports_counted
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from tests.signing import aigame_payout_body
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from tests.services import Services

T = TypeVar("T")
GATHERED = 12
SIZES = "payouts_ingress_events_per_message"
# Long enough for the event loop to have handled every request the test sent.
SETTLE_SECONDS = 0.3


@contextlib.asynccontextmanager
async def gathering(
    services: Services, database_url: str, proxy: TcpProxy, **broker: object
) -> AsyncIterator[Pipeline]:
    """The ingress, its broker connection through `proxy`; the worker not started yet."""
    settings = pipeline_settings(services, database_url)
    through = {"urls": (proxy.url_through(services.rabbitmq_url),), **broker}
    settings = settings.model_copy(update={"broker": settings.broker.model_copy(update=through)})
    async with pipeline(settings, services, with_worker=False) as running:
        yield running


@pytest.fixture
async def proxy(services: Services) -> AsyncIterator[TcpProxy]:
    started = await TcpProxy.in_front_of(services.rabbitmq_url)
    yield started
    await started.close()


async def answers_while_frozen(
    proxy: TcpProxy, requests: list[Coroutine[Any, Any, T]]
) -> list[asyncio.Task[T]]:
    """Send the first request, then the others while its publish is held in flight; check that
    none is answered before the broker could confirm."""
    proxy.freeze()
    answers = [asyncio.create_task(requests[0])]
    await asyncio.sleep(SETTLE_SECONDS)
    answers += [asyncio.create_task(request) for request in requests[1:]]
    await asyncio.sleep(SETTLE_SECONDS)
    assert not any(answer.done() for answer in answers)
    return answers


async def status(running: Pipeline, query: str) -> int:
    return (await running.client.get(f"{CALLBACK}?{query}")).status_code


def published(
    messages: list[aio_pika.abc.AbstractIncomingMessage],
) -> list[tuple[str | None, int]]:
    """Each message's type and how many events it holds, smallest first."""
    sizes = [
        (m.type, 1 if m.type == EVENT_TYPE else len(decode_envelope(m.body))) for m in messages
    ]
    return sorted(sizes, key=lambda size: size[1])


def publish_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(logged_fields(record)["error"])
        for record in caplog.records
        if record.getMessage() == "publish not confirmed"
    ]


async def credited_once_after_retries(running: Pipeline, queries: list[str]) -> None:
    """The providers' retries are accepted, and with the worker running each transaction is
    credited once, whatever copies of the unconfirmed messages reached the queue."""
    retries = [await running.client.get(f"{CALLBACK}?{query}") for query in queries]
    assert {retry.status_code for retry in retries} == {200}
    await running.start_worker()

    async def credited() -> bool:
        count = await running.value("SELECT count(*) FROM payouts WHERE status = 'credited'")
        return bool(count == len(queries))

    await wait_until(credited, "every retried callback credited")
    await asyncio.sleep(1)  # time for any copy still queued to reach the worker: a duplicate
    assert await running.value("SELECT count(*) FROM payouts") == len(queries)
    assert await running.value(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = 'u-1'"
    ) == Decimal(5 * len(queries))
    conn = await asyncpg.connect(running.settings.database.url)
    try:
        await assert_books_balance(conn)
    finally:
        await conn.close()


async def test_callbacks_arriving_while_a_publish_is_in_flight_share_one_message(
    services: Services, database_url: str, proxy: TcpProxy
) -> None:
    queries = [signed() for _ in range(GATHERED + 1)]
    before = generate_latest().decode()
    async with gathering(services, database_url, proxy, max_events_per_message=GATHERED) as running:
        answers = await answers_while_frozen(proxy, [status(running, query) for query in queries])
        proxy.thaw()
        assert set(await asyncio.gather(*answers)) == {200}
        messages = await queued_messages(services.rabbitmq_url, running.settings.broker.namespace)
    assert published(messages) == [(EVENT_TYPE, 1), (ENVELOPE_TYPE, GATHERED)]
    after = generate_latest().decode()
    assert [
        sample_value(after, f"{SIZES}_{part}") - sample_value(before, f"{SIZES}_{part}")
        for part in ("count", "sum")
    ] == [2, GATHERED + 1]
    single, envelope = sorted(messages, key=lambda m: m.type == ENVELOPE_TYPE)
    assert envelope.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    transactions = {decode_event(single.body).transaction_id} | {
        enclosed.event.transaction_id
        for enclosed in decode_envelope(envelope.body)
        if enclosed.event is not None
    }
    assert len(transactions) == GATHERED + 1


async def test_a_nacked_envelope_answers_each_of_its_requests_try_again(
    services: Services, database_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A second queue bound to the work exchange, full and set to reject publishes: the broker
    stores the messages in the work queue but nacks them."""
    caplog.set_level(logging.WARNING)
    queries = [signed() for _ in range(GATHERED + 1)]
    async with gathering(services, database_url, proxy, max_events_per_message=GATHERED) as running:
        namespace = running.settings.broker.namespace
        async with refusing_queue(services.rabbitmq_url, f"{namespace}.full", 1) as full:
            await full.channel.default_exchange.publish(aio_pika.Message(b"filler"), full.name)
            await full.bind(Topology(namespace).exchange, ROUTING_KEY)
            answers = await answers_while_frozen(
                proxy, [status(running, query) for query in queries]
            )
            proxy.thaw()
            assert set(await asyncio.gather(*answers)) == {503}
            await full.delete(if_unused=False, if_empty=False)
        assert len(errors := publish_errors(caplog)) == GATHERED + 1
        assert all("Nack" in error for error in errors), errors
        await credited_once_after_retries(running, queries)

        async def nacked_copies_are_duplicates() -> bool:
            copies = await running.value("SELECT sum(duplicate_deliveries) FROM payouts")
            return bool(copies == len(queries))

        await wait_until(nacked_copies_are_duplicates, "the nacked copies credited as duplicates")


async def test_a_returned_envelope_answers_each_of_its_requests_try_again(
    services: Services, database_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    queries = [signed() for _ in range(GATHERED + 1)]
    async with gathering(services, database_url, proxy, max_events_per_message=GATHERED) as running:
        topology = Topology(running.settings.broker.namespace)
        admin = await aio_pika.connect(services.rabbitmq_url)
        async with admin:
            queue = await (await admin.channel()).get_queue(topology.work_queue)
            await queue.unbind(topology.exchange, ROUTING_KEY)
            answers = await answers_while_frozen(
                proxy, [status(running, query) for query in queries]
            )
            proxy.thaw()
            assert set(await asyncio.gather(*answers)) == {503}
            await queue.bind(topology.exchange, ROUTING_KEY)
        assert len(errors := publish_errors(caplog)) == GATHERED + 1
        assert not any("in time" in error for error in errors), errors
        assert await queued_messages(services.rabbitmq_url, topology.namespace) == []
        await credited_once_after_retries(running, queries)


async def test_an_unconfirmed_envelope_answers_each_of_its_requests_try_again_in_time(
    services: Services, database_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    queries = [signed() for _ in range(GATHERED + 1)]
    async with gathering(
        services, database_url, proxy, max_events_per_message=GATHERED, publish_timeout_seconds=1
    ) as running:
        answers = await answers_while_frozen(proxy, [status(running, query) for query in queries])
        assert set(await asyncio.gather(*answers)) == {503}
        errors = publish_errors(caplog)
        assert errors == ["the broker did not confirm in time"] * (GATHERED + 1)
        proxy.thaw()  # the broker may now store what it never confirmed
        await credited_once_after_retries(running, queries)


async def test_gathered_json_callbacks_are_each_answered_with_their_own_outcome(
    services: Services, database_url: str, proxy: TcpProxy
) -> None:
    """Spec 001 waits for the outcome: the envelope names the process's own channel, and each
    request hears the balance after its own payout."""
    async with gathering(services, database_url, proxy) as running:
        await running.create_member("member-1", "VND2")
        await running.start_worker()
        own_before = reports_counted(OWN)
        shared_before = reports_counted(SHARED)
        bodies = [aigame_payout_body(payout(win="1"), AIGAME_KEY) for _ in range(GATHERED + 1)]
        answers = await answers_while_frozen(
            proxy, [running.client.post(AIGAME, json=body) for body in bodies]
        )
        proxy.thaw()
        answered = [answer.json() for answer in await asyncio.gather(*answers)]
    assert {answer["code"] for answer in answered} == {200}
    balances = {Decimal(answer["data"]["balance"]) for answer in answered}
    assert balances == {Decimal(credited) for credited in range(1, GATHERED + 2)}
    assert reports_counted(OWN) - own_before == GATHERED + 1
    assert reports_counted(SHARED) == shared_before
