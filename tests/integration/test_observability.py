"""Metrics, health, the failed-verification cap and device-id hashing, through the real app, the
real broker and a real worker. Metrics live in one registry per process, so every assertion is on
the change a test caused, not on absolute values."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ingress import metrics
from ingress.app import create_app
from ingress.device_ids import mask
from schema.events import decode_event
from schema.settings import WorkerSettings
from tests.integration.pipeline import ENVIRON, pipeline, pipeline_settings
from tests.integration.test_ingress import CALLBACK, SECRET, queued_messages, settings_for
from tests.metrics_reading import sample_names, sample_value
from tests.polling import wait_until
from tests.signing import offerwall_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette

    from tests.services import Services

PROVIDER_ADDRESS = "203.0.113.10"
ATTACKER_ADDRESS = "198.51.100.66"
IMEI = "490154203237518"
MAC = "00:1A:2B:3C:4D:5E"


def offerwall_request(key: str = SECRET, **extra: str) -> str:
    params = {
        "user_id": "u-1",
        "amount": "5",
        "trans_id": uuid.uuid4().hex,
        "send_time": "1700000000",
    }
    return f"{CALLBACK}?{offerwall_query({**params, **extra}, key)}"


def client_from(app: Starlette, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://ingress")


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.fixture
async def namespace(services: Services) -> AsyncIterator[str]:
    name = services.new_namespace()
    yield name
    await services.release_namespace(name)


async def started(app: Starlette) -> None:
    async with client_from(app, "127.0.0.1") as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until(ready, "ingress connected to the broker")


async def test_the_ingress_counts_answers_failures_secrets_and_publishes(
    services: Services, namespace: str
) -> None:
    settings = settings_for(services.rabbitmq_url, namespace, secret_env=("OW_CURRENT", "OW_NEXT"))
    secrets = {"OW_CURRENT": "old-secret-7f3a", "OW_NEXT": "new-secret-91c2"}
    app = create_app(settings, {**secrets, "TEST_SECRET": SECRET})
    instance = settings.providers[0].name
    async with app.router.lifespan_context(app), client_from(app, "127.0.0.1") as client:
        await started(app)
        before = await scrape(client)
        answers = [
            (await client.get(offerwall_request(secrets["OW_CURRENT"]))).status_code,
            (await client.get(offerwall_request(secrets["OW_NEXT"]))).status_code,
            (await client.get(offerwall_request(secrets["OW_NEXT"]))).status_code,
            (await client.get(offerwall_request("forged"))).status_code,
            (await client.get(f"{CALLBACK}?user_id=u")).status_code,
        ]
        after = await scrape(client)
    assert answers == [200, 200, 200, 403, 400]

    def grew(name: str, **labels: str) -> float:
        return sample_value(after, name, **labels) - sample_value(before, name, **labels)

    requests = "payouts_ingress_requests_total"
    assert grew(requests, instance=instance, verdict="accepted", answer_code="200") == 3
    assert grew(requests, instance=instance, verdict="bad_signature", answer_code="403") == 1
    assert grew(requests, instance=instance, verdict="malformed", answer_code="400") == 1
    failures = "payouts_ingress_verification_failures_total"
    assert grew(failures, instance=instance, reason="bad_signature") == 1
    assert grew(failures, instance=instance, reason="malformed") == 1
    # Rotation: which secret verified, by variable name, so the old one can be retired safely.
    matches = "payouts_ingress_secret_matches_total"
    assert grew(matches, instance=instance, secret="OW_CURRENT") == 1
    assert grew(matches, instance=instance, secret="OW_NEXT") == 2
    assert not any(secret in after for secret in secrets.values())  # names, never secrets
    assert grew("payouts_ingress_publish_seconds_count") == 3
    assert grew("payouts_ingress_request_seconds_count", instance=instance) == 5
    assert sample_value(after, "payouts_ingress_broker_connected") == 1


async def test_refusal_reasons_and_secrets_are_exported_at_zero_before_the_first_callback(
    services: Services, namespace: str
) -> None:
    """So that Prometheus's increase() counts the first refusal of each reason and the first
    match of each secret (the console's Providers page reads them so)."""
    # An instance of its own: the registry is the process's, shared with the other tests.
    settings = settings_for(
        services.rabbitmq_url, namespace, name="fresh", secret_env=("OW_FRESH", "OW_SPARE")
    )
    secrets = {"OW_FRESH": "fresh-secret-1", "OW_SPARE": "spare-secret-2", "TEST_SECRET": SECRET}
    app = create_app(settings, secrets)
    instance = settings.providers[0].name
    async with app.router.lifespan_context(app), client_from(app, "127.0.0.1") as client:
        await started(app)
        exposition = await scrape(client)
    exported = {
        (sample.name, sample.labels.get("reason") or sample.labels.get("secret"))
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.labels.get("instance") == instance and sample.value == 0
    }
    failures = "payouts_ingress_verification_failures_total"
    assert {(failures, "ip_not_allowed"), (failures, "bad_signature")} <= exported
    matches = "payouts_ingress_secret_matches_total"
    assert {(matches, "OW_FRESH"), (matches, "OW_SPARE")} <= exported


async def test_the_broker_gauge_follows_the_connection_without_a_scrape(
    services: Services, namespace: str
) -> None:
    # Under --processes N another process answers the scrapes: this one's value must be
    # written all the same.
    metrics.BROKER_CONNECTED.set(0)  # whatever an earlier test's app left in this process
    app = create_app(settings_for(services.rabbitmq_url, namespace), {"TEST_SECRET": SECRET})
    async with app.router.lifespan_context(app):

        async def reported() -> bool:
            return REGISTRY.get_sample_value("payouts_ingress_broker_connected") == 1

        await wait_until(reported, "the broker gauge at 1, unscraped")


async def test_metrics_are_served_only_to_the_allowlisted_networks(
    services: Services, namespace: str
) -> None:
    app = create_app(settings_for(services.rabbitmq_url, namespace), {"TEST_SECRET": SECRET})
    async with app.router.lifespan_context(app):
        async with client_from(app, PROVIDER_ADDRESS) as outsider:
            refused = await outsider.get("/metrics")
        async with client_from(app, "10.1.2.3") as prometheus:
            allowed = await prometheus.get("/metrics")
    assert refused.status_code == 403
    assert "payouts_ingress" not in refused.text
    assert allowed.status_code == 200
    assert "payouts_ingress_requests_total" in allowed.text


async def test_an_address_failing_verification_is_capped_and_others_are_not(
    services: Services, namespace: str
) -> None:
    settings = settings_for(services.rabbitmq_url, namespace, failed_verifications_per_minute=3)
    app = create_app(settings, {"TEST_SECRET": SECRET})
    instance = settings.providers[0].name
    async with (
        app.router.lifespan_context(app),
        client_from(app, ATTACKER_ADDRESS) as attacker,
        client_from(app, PROVIDER_ADDRESS) as genuine,
        client_from(app, "127.0.0.1") as prometheus,
    ):
        await started(app)
        before = await scrape(prometheus)
        forged = [(await attacker.get(offerwall_request("forged"))).status_code for _ in range(3)]
        capped = await attacker.get(offerwall_request())  # signed, but not even verified now
        provider_answer = await genuine.get(offerwall_request())
        after = await scrape(prometheus)
    assert forged == [403, 403, 403]
    assert capped.status_code == 429
    assert capped.json()["error"] == "rate_limited"  # in the provider's own format
    assert provider_answer.status_code == 200
    (message,) = await queued_messages(services.rabbitmq_url, namespace)
    assert decode_event(message.body).raw_request.client_ip == PROVIDER_ADDRESS
    failures = "payouts_ingress_verification_failures_total"
    assert (
        sample_value(after, failures, instance=instance, reason="rate_limited")
        - sample_value(before, failures, instance=instance, reason="rate_limited")
    ) == 1


async def test_a_provider_whose_signed_callbacks_are_refused_is_not_capped(
    services: Services, namespace: str
) -> None:
    """Refusals after a good signature are the provider's business mistakes: however many, its
    next correct callback is verified and accepted."""
    settings = settings_for(services.rabbitmq_url, namespace, failed_verifications_per_minute=3)
    app = create_app(settings, {"TEST_SECRET": SECRET})
    async with app.router.lifespan_context(app), client_from(app, PROVIDER_ADDRESS) as genuine:
        await started(app)
        over_maximum = [
            (await genuine.get(offerwall_request(amount="100001"))).status_code for _ in range(4)
        ]
        accepted = await genuine.get(offerwall_request())
    assert over_maximum == [400] * 4
    assert accepted.status_code == 200


async def test_the_allowlists_effect_shows_in_the_metrics(
    services: Services, namespace: str
) -> None:
    from ipaddress import ip_network

    settings = settings_for(
        services.rabbitmq_url, namespace, ip_allowlist=(ip_network("203.0.113.0/24"),)
    )
    app = create_app(settings, {"TEST_SECRET": SECRET})
    instance = settings.providers[0].name
    async with app.router.lifespan_context(app), client_from(app, "10.0.0.9") as inside:
        before = await scrape(inside)
        async with client_from(app, ATTACKER_ADDRESS) as outside:
            assert (await outside.get(offerwall_request())).status_code == 403
        after = await scrape(inside)
    name = "payouts_ingress_verification_failures_total"
    labels = {"instance": instance, "reason": "ip_not_allowed"}
    assert sample_value(after, name, **labels) - sample_value(before, name, **labels) == 1


@pytest.mark.parametrize("store_device_ids", [False, True])
async def test_device_ids_are_hashed_unless_the_instance_keeps_them(
    services: Services, namespace: str, caplog: pytest.LogCaptureFixture, store_device_ids: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(
        services.rabbitmq_url,
        namespace,
        store_device_ids=store_device_ids,
        parameters={"imei": "device_imei"},  # hashed under the name the provider sends
    )
    app = create_app(settings, {"TEST_SECRET": SECRET})
    async with app.router.lifespan_context(app), client_from(app, "127.0.0.1") as client:
        await started(app)
        response = await client.get(offerwall_request(device_imei=IMEI, mac=MAC, gaid=""))
    assert response.status_code == 200
    (message,) = await queued_messages(services.rabbitmq_url, namespace)
    event = decode_event(message.body)
    if store_device_ids:
        assert event.attributes["imei"] == IMEI
        assert event.attributes["mac"] == MAC
        assert f"device_imei={IMEI}" in event.raw_request.query_string
    else:
        assert event.attributes["imei"] == mask(IMEI)
        assert event.attributes["mac"] == mask(MAC)
        assert IMEI not in message.body.decode()
        assert MAC not in message.body.decode()
        assert "00%3A1A" not in message.body.decode()
        assert "user_id=u-1" in event.raw_request.query_string  # the rest is kept as sent
    # Our own lines and the server's; the test's HTTP client logs the URL it was given.
    logged = "\n".join(
        record.getMessage() + json.dumps(record.__dict__, default=str)
        for record in caplog.records
        if record.name.split(".")[0] in {"ingress", "workers", "database", "schema", "uvicorn"}
    )
    assert "callback answered" in logged
    assert IMEI not in logged
    assert MAC not in logged


async def test_a_workers_status_port_serves_metrics_health_and_readiness(
    services: Services, database_url: str
) -> None:
    settings = pipeline_settings(services, database_url)
    settings = settings.model_copy(
        update={
            "worker": WorkerSettings(
                prefetch=4, shutdown_grace_seconds=5, status_port=0, queue_sample_seconds=1
            )
        }
    )
    async with pipeline(settings, services) as running:
        worker = running.worker
        assert worker is not None

        async def listening() -> bool:
            return worker.status.port is not None

        await wait_until(listening, "the worker's status port open")
        status = httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.status.port}")
        async with status:

            async def consuming() -> bool:
                return (await status.get("/readyz")).status_code == 200

            await wait_until(consuming, "worker ready")
            before = (await status.get("/metrics")).text
            params = {"user_id": "u-9", "amount": "7", "trans_id": uuid.uuid4().hex}
            query = offerwall_query({**params, "send_time": "1700000000"}, ENVIRON["TEST_SECRET"])
            assert (
                await running.client.get(f"/callbacks/offerwall_md5?{query}")
            ).status_code == 200

            async def credited() -> bool:
                text = (await status.get("/metrics")).text
                name = "payouts_worker_payouts_total"
                labels = {"instance": "offerwall", "outcome": "credited"}
                return sample_value(text, name, **labels) > sample_value(before, name, **labels)

            await wait_until(credited, "the credit counted")
            text = (await status.get("/metrics")).text
            health = await status.get("/healthz")
            readiness = await status.get("/readyz")
            unknown = await status.get("/nothing-here")
            posted = await status.post("/metrics")
            work_queue = f"{settings.broker.namespace}.payouts.work"

            async def sampled() -> bool:
                names = sample_names((await status.get("/metrics")).text)
                return "payouts_queue_messages" in names

            await wait_until(sampled, "queue depths sampled")
            depths = (await status.get("/metrics")).text
    assert health.status_code == 200
    assert readiness.json() == {"status": "ready", "broker": "consuming", "database": "reachable"}
    assert (unknown.status_code, posted.status_code) == (404, 405)
    for name in (
        "payouts_worker_batch_size_count",
        "payouts_worker_commit_seconds_count",
        "payouts_worker_lag_seconds_count",
    ):
        assert sample_value(text, name) > sample_value(before, name), name
    assert sample_value(text, "payouts_worker_consuming") >= 1
    assert f'queue="{work_queue}"' in depths
    assert sum(1 for line in depths.splitlines() if line.startswith("payouts_queue_messages{")) >= 3


async def test_a_worker_refuses_to_start_on_a_taken_status_port(
    services: Services, database_url: str
) -> None:
    from workers.consumer import Worker
    from workers.database import create_pool_when_available

    taken = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    settings = pipeline_settings(services, database_url).model_copy(
        update={"worker": WorkerSettings(status_port=port)}
    )
    pool = await create_pool_when_available(settings.database)
    try:
        with pytest.raises(OSError, match=f"worker status port 127.0.0.1:{port}"):
            await Worker(settings, pool).run(asyncio.Event())
    finally:
        await pool.close()
        taken.close()
        await taken.wait_closed()
