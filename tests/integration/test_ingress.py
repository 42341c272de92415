"""The ingress app in-process against the real RabbitMQ: answer only after the broker confirmed."""

from __future__ import annotations

import json
import logging
import random
import uuid
from contextlib import asynccontextmanager
from decimal import Decimal
from ipaddress import ip_network
from typing import TYPE_CHECKING, Any

import aio_pika
import httpx
import pytest

from ingress.app import create_app
from schema.events import decode_event
from schema.logs import logged_fields
from schema.settings import BrokerSettings, DatabaseSettings, IngressSettings, Settings
from schema.topology import ROUTING_KEY, Topology
from tests.broker_admin import close_connections
from tests.factories import provider
from tests.polling import wait_until
from tests.signing import adjoe_query, offerwall_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, MutableMapping

    from starlette.applications import Starlette

    from tests.services import Services

SECRET = "pub-key-1"
CALLBACK = "/callbacks/offerwall_md5"


# The callback path never touches Postgres: every ingress test runs with an unreachable database.
NO_DATABASE = DatabaseSettings(url="postgresql://nobody@127.0.0.1:1/none")


def settings_for(broker_url: str, namespace: str, **provider_overrides: Any) -> Settings:
    return Settings(
        database=NO_DATABASE,
        broker=BrokerSettings(urls=(broker_url,), namespace=namespace, publish_timeout_seconds=2),
        ingress=IngressSettings(max_query_bytes=1024),
        providers=(provider("offerwall_md5", **provider_overrides), provider("adjoe")),
    )


@asynccontextmanager
async def running(
    settings: Settings, wait_ready: bool = True, environ: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, environ or {"TEST_SECRET": SECRET})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            if wait_ready:

                async def ready() -> bool:
                    return (await client.get("/readyz")).status_code == 200

                await wait_until(ready, "ingress connected to the broker")
            yield client


def signed(**overrides: str) -> str:
    params = {
        "user_id": "u-1",
        "amount": "5",
        "trans_id": uuid.uuid4().hex,
        "send_time": "1700000000",
    }
    return offerwall_query({**params, **overrides}, SECRET)


async def queued_messages(
    broker_url: str, namespace: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(broker_url)
    async with connection:
        queue = await (await connection.channel()).get_queue(Topology(namespace).work_queue)
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages


@pytest.fixture
async def namespace(services: Services) -> AsyncIterator[str]:
    created = services.new_namespace()
    yield created
    await services.release_namespace(created)


async def test_accepted_callback_is_published_persistent_and_then_answered(
    services: Services, namespace: str
) -> None:
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        response = await client.get(f"{CALLBACK}?{signed(trans_id='tx-42', amount='7')}")
    assert response.status_code == 200
    assert response.json() == {"is_valid": True}
    (message,) = await queued_messages(services.rabbitmq_url, namespace)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    event = decode_event(message.body)
    assert message.message_id == str(event.event_id)
    assert (message.content_type, message.type) == ("application/json", "payout.v1")
    assert message.headers["provider_instance"] == "test-offerwall-md5"
    assert message.timestamp == event.received_at.replace(microsecond=0)
    assert (event.transaction_id, event.amount, event.currency) == ("tx-42", Decimal(7), "COIN")
    assert event.provider_instance == "test-offerwall-md5"
    assert event.raw_request.client_ip == "127.0.0.1"


async def test_adjoe_callback_is_answered_200(services: Services, namespace: str) -> None:
    params = {
        "user_uuid": "u-1",
        "coin_amount": "3",
        "currency": "coins",
        "trans_uuid": str(uuid.uuid4()),
    }
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        response = await client.get(f"/callbacks/adjoe?{adjoe_query(params, SECRET)}")
    assert response.status_code == 200
    assert len(await queued_messages(services.rabbitmq_url, namespace)) == 1


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (f"{CALLBACK}?{signed()}".replace("amount=5", "amount=6"), 403, "bad_signature"),
        (f"{CALLBACK}?{signed(amount='5.0')}", 400, "malformed"),
        (f"{CALLBACK}?{signed()}&user_id=u-2", 400, "malformed"),
        (f"{CALLBACK}?{signed(padding='x' * 2000)}", 413, "too_large"),
        (f"{CALLBACK}?user_id=%FF", 400, "malformed"),
    ],
    ids=["tampered", "not-an-integer", "duplicate-key", "query-too-long", "not-utf8"],
)
async def test_rejections_answer_in_the_provider_format_and_publish_nothing(
    services: Services, namespace: str, path: str, status: int, error: str
) -> None:
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        response = await client.get(path)
    assert response.status_code == status
    assert response.json()["is_valid"] is False
    assert response.json()["error"] == error
    assert await queued_messages(services.rabbitmq_url, namespace) == []


async def test_two_instances_of_one_protocol_work_side_by_side(
    services: Services, namespace: str
) -> None:
    apps = [
        provider(
            "adjoe", name=f"adjoe-{app}", route=f"/cb/{app}", secret_env=f"TOKEN_{app.upper()}"
        )
        for app in ("puzzle", "racing")
    ]
    settings = Settings(
        database=NO_DATABASE,
        broker=BrokerSettings(urls=(services.rabbitmq_url,), namespace=namespace),
        providers=tuple(apps),
    )
    tokens = {"TOKEN_PUZZLE": "puzzle-token", "TOKEN_RACING": "racing-token"}
    trans_uuid = str(uuid.uuid4())
    params = {"user_uuid": "u-1", "coin_amount": "3", "currency": "coins", "trans_uuid": trans_uuid}
    async with running(settings, environ=tokens) as client:
        own = [
            await client.get(f"/cb/{app}?{adjoe_query(params, f'{app}-token')}")
            for app in ("puzzle", "racing")
        ]
        crossed = await client.get(f"/cb/puzzle?{adjoe_query(params, 'racing-token')}")
    assert [r.status_code for r in own] == [200, 200]
    assert crossed.status_code == 403
    published = [
        decode_event(m.body) for m in await queued_messages(services.rabbitmq_url, namespace)
    ]
    assert sorted(e.provider_instance for e in published) == ["adjoe-puzzle", "adjoe-racing"]
    assert {e.transaction_id for e in published} == {trans_uuid}


async def test_secret_rotated_step_by_step_rejects_no_callback(
    services: Services, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented procedure: add the next secret, let the provider switch, retire the old
    one. Each step is a restart with new settings; no correctly signed callback gets a 403."""
    caplog.set_level(logging.INFO)
    steps = [
        (("OW_CURRENT",), ["old"]),
        (("OW_CURRENT", "OW_NEXT"), ["old", "new", "old", "new"]),  # the provider switches
        (("OW_NEXT",), ["new"]),
    ]
    secrets = {"OW_CURRENT": "old", "OW_NEXT": "new", "TEST_SECRET": SECRET}
    statuses = []
    for names, keys in steps:
        settings = settings_for(services.rabbitmq_url, namespace, secret_env=names)
        async with running(settings, environ=secrets) as client:
            for key in keys * 10:
                params = {"user_id": "u", "amount": "1", "trans_id": uuid.uuid4().hex}
                query = offerwall_query({**params, "send_time": "1700000000"}, key)
                statuses.append((await client.get(f"{CALLBACK}?{query}")).status_code)
            retired = await client.get(f"{CALLBACK}?{offerwall_query(params, 'old')}")
    assert set(statuses) == {200}
    assert retired.status_code == 403  # after the last step the old secret no longer verifies
    matched = {logged_fields(r).get("secret") for r in caplog.records}
    assert {"OW_CURRENT", "OW_NEXT"} <= matched
    assert not {"old", "new"} & matched  # the log names variables, never secrets


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PROPFIND"])
async def test_wrong_method_is_refused_in_the_providers_format(
    services: Services, namespace: str, method: str
) -> None:
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        response = await client.request(method, f"{CALLBACK}?{signed()}")
    assert response.status_code == 405
    assert response.json() == {
        "is_valid": False,
        "error": "method_not_allowed",
        "detail": "callbacks are HTTP GET requests",
    }


async def test_paths_near_a_callback_still_get_starlettes_routing(
    services: Services, namespace: str
) -> None:
    """Callbacks are dispatched before Starlette's router; every other path still reaches it."""
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        slash = await client.get(f"{CALLBACK}/?{signed()}")
        unknown = await client.get(f"{CALLBACK}-x?{signed()}")
        health = await client.get("/healthz")
    assert slash.status_code == 307
    assert slash.headers["location"].startswith(f"http://ingress{CALLBACK}?")
    assert unknown.status_code == 404
    assert health.json() == {"status": "alive"}
    assert await queued_messages(services.rabbitmq_url, namespace) == []


async def test_ip_allowlist_and_trusted_proxy(services: Services, namespace: str) -> None:
    settings = settings_for(
        services.rabbitmq_url, namespace, ip_allowlist=(ip_network("198.51.100.0/24"),)
    )
    async with running(settings) as client:
        direct = await client.get(
            f"{CALLBACK}?{signed()}", headers={"x-forwarded-for": "198.51.100.7"}
        )
    assert (direct.status_code, direct.json()["error"]) == (403, "ip_not_allowed")

    proxied = settings.model_copy(
        update={"ingress": IngressSettings(trusted_proxies=(ip_network("127.0.0.1/32"),))}
    )
    async with running(proxied) as client:
        response = await client.get(
            f"{CALLBACK}?{signed()}", headers={"x-forwarded-for": "198.51.100.7"}
        )
    assert response.status_code == 200
    (message,) = await queued_messages(services.rabbitmq_url, namespace)
    assert decode_event(message.body).raw_request.client_ip == "198.51.100.7"


async def test_unreachable_broker_means_try_again_never_accepted(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for("amqp://guest:guest@127.0.0.1:1/", namespace)
    async with running(settings, wait_ready=False) as client:
        ready = await client.get("/readyz")
        response = await client.get(f"{CALLBACK}?{signed()}")
    assert ready.status_code == 503
    assert (response.status_code, response.json()["error"]) == (503, "try_again")
    # An unconfirmed publish may still have reached a queue: its callback line names the event.
    fields = {r.getMessage(): logged_fields(r) for r in caplog.records}
    event_id = fields["publish not confirmed"]["event_id"]
    assert event_id
    assert fields["callback answered"]["event_id"] == event_id


async def test_ingress_recovers_after_its_broker_connection_is_closed(
    services: Services, namespace: str
) -> None:
    """While it reconnects the answer is 503 (retry), never a 500 and never an unpublished 200."""
    statuses: list[int] = []
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        assert close_connections(namespace, "ingress") == 1

        async def provider_retry_accepted() -> bool:
            statuses.append((await client.get(f"{CALLBACK}?{signed()}")).status_code)
            return statuses[-1] == 200

        await wait_until(provider_retry_accepted, "a callback accepted after the reconnect")
    assert set(statuses) <= {200, 503}
    assert len(await queued_messages(services.rabbitmq_url, namespace)) == statuses.count(200)


async def test_unroutable_publish_is_not_accepted(services: Services, namespace: str) -> None:
    """The work queue unbound: the broker returns the message, and the provider hears 503."""
    topology = Topology(namespace)
    async with running(settings_for(services.rabbitmq_url, namespace)) as client:
        connection = await aio_pika.connect(services.rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(topology.work_queue)
            await queue.unbind(topology.exchange, ROUTING_KEY)
            response = await client.get(f"{CALLBACK}?{signed()}")
            await queue.bind(topology.exchange, ROUTING_KEY)
    assert (response.status_code, response.json()["error"]) == (503, "try_again")
    assert await queued_messages(services.rabbitmq_url, namespace) == []


async def raw_request(app: Starlette, method: str, path: str, query: bytes) -> tuple[int, bytes]:
    """Call the app as uvicorn would, with query bytes no HTTP client would normalize first."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"ingress")],
        "client": ("127.0.0.1", 40000),
        "server": ("ingress", 80),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


async def test_no_input_makes_the_ingress_answer_500(services: Services, namespace: str) -> None:
    """Random bytes, and correctly signed random values: the answer is always the provider's
    own accept or reject, and only accepted callbacks are published."""
    rng = random.Random(20261122)
    pieces = [
        b"user_id",
        b"amount",
        b"sign",
        b"=",
        b"&",
        b"%",
        b"%C3",
        b"%FF",
        b"+",
        b"\\x00",
        b"1",
    ]
    values = [
        "",
        "0",
        "7",
        "1.5",
        "-1",
        "1e3",
        "99999999",
        "abc",
        " x",
        "\u00e9",
        "\x00",
        "x" * 200,
    ]
    # Uncapped: past the failed-verification cap the rest would be answered 429 unparsed, and
    # the parsers are what this test is about (the cap has tests of its own).
    settings = settings_for(
        services.rabbitmq_url, namespace, failed_verifications_per_minute=1_000_000
    )
    app = create_app(settings, {"TEST_SECRET": SECRET})
    accepted = 0
    async with app.router.lifespan_context(app):

        async def ready() -> bool:
            return (await raw_request(app, "GET", "/readyz", b""))[0] == 200

        await wait_until(ready, "ingress connected to the broker")
        for round_number in range(600):
            if round_number % 2:
                query = b"".join(
                    rng.choice(pieces) if rng.random() < 0.6 else bytes([rng.randrange(256)])
                    for _ in range(rng.randint(0, 60))
                )
            else:
                good = {
                    "user_id": "u-1",
                    "amount": "7",
                    "trans_id": uuid.uuid4().hex,
                    "send_time": "1700000000",
                    "gaid": "38400000-8cf0-11bd-b23e-10b96e40000d",
                }
                params = {
                    name: good_value if rng.random() < 0.8 else rng.choice(values)
                    for name, good_value in good.items()
                    if rng.random() < 0.95
                }
                query = offerwall_query(params, SECRET).encode()
            method = rng.choice(["GET", "GET", "GET", "POST", "DELETE"])
            status, body = await raw_request(app, method, CALLBACK, query)
            assert status in {200, 400, 403, 405, 413}, (query, body)
            assert json.loads(body)["is_valid"] is (status == 200)
            accepted += status == 200
    assert accepted > 0, "no generated request was valid: the fuzzer never reached the publish"
    assert len(await queued_messages(services.rabbitmq_url, namespace)) == accepted
