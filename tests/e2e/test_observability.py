"""What an operator sees, from real processes under provider traffic while the database and then
the broker go away: health, readiness and metrics keep answering and say what is wrong, the logs
correlate each payout with its callback and hold no secret or raw device id, and nothing is lost."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

import httpx
import pytest

from schema.topology import Topology
from tests.e2e.fault_runs import settle
from tests.e2e.provider import ProviderSimulator, device_ids, reconcile
from tests.e2e.stack import ADJOE_TOKEN, AIGAME_KEY, BILLING_SECRET, OFFERWALL_KEY, RETRY_TIERS
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.e2e.stack import Process, Stack
    from tests.service_control import ServiceControl

# At least this long, and until the outages are over, however slowly a loaded machine runs them.
PAYOUTS_PER_SECOND = 12.0
TRAFFIC_SECONDS = 25.0


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return sample_value(response.text, name, **labels)


def log_lines(process: Process) -> list[dict[str, object]]:
    lines = []
    for line in process.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.mark.disruptive
async def test_health_metrics_and_logs_through_database_and_broker_outages(
    stack: Stack, service_control: ServiceControl
) -> None:
    proxy = await TcpProxy.in_front_of(stack.database_url)
    try:
        ingress = await stack.start_ingress()
        worker = await stack.start_worker(database_url=proxy.url_through(stack.database_url))
        provider = ProviderSimulator(stack, seed=33)
        async with (
            httpx.AsyncClient(base_url=stack.base_url) as front,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.status_port}") as back,
        ):
            async with provider.traffic(PAYOUTS_PER_SECOND, TRAFFIC_SECONDS):

                async def credits_counted() -> bool:
                    return (
                        await metric(back, "payouts_worker_payouts_total", outcome="credited") > 0
                    )

                await wait_until(credits_counted, "the worker counting credits under traffic")
                assert await metric(front, "payouts_ingress_requests_total", verdict="accepted") > 0

                await proxy.cut()  # the worker's database, gone

                async def database_reported_down() -> bool:
                    report = (await back.get("/readyz")).json()
                    return bool(report["database"] == "unreachable")

                await wait_until(database_reported_down, "worker readiness naming the database")
                # Still consuming (deliveries move to the retry tiers), so still ready and alive.
                assert (await back.get("/readyz")).status_code == 200
                assert (await back.get("/healthz")).status_code == 200
                await proxy.restore()

                async with service_control.broker_stopped():

                    async def both_unready() -> bool:
                        front_ready = await front.get("/readyz")
                        back_ready = await back.get("/readyz")
                        return (front_ready.status_code, back_ready.status_code) == (503, 503)

                    await wait_until(both_unready, "ingress and worker unready without the broker")
                    assert (await front.get("/readyz")).json()["broker"] == "disconnected"
                    assert (await back.get("/readyz")).json()["broker"] == "not consuming"
                    assert (await front.get("/healthz")).status_code == 200
                    assert (await back.get("/healthz")).status_code == 200
                    assert await metric(front, "payouts_ingress_broker_connected") == 0
                    assert await metric(back, "payouts_worker_consuming") == 0
                    # The providers are told to retry; the metric shows it.
                    assert (
                        await metric(front, "payouts_ingress_requests_total", verdict="try_again")
                        > 0
                    )

                async def both_ready() -> bool:
                    front_ready = await front.get("/readyz")
                    back_ready = await back.get("/readyz")
                    return (front_ready.status_code, back_ready.status_code) == (200, 200)

                await wait_until(both_ready, "ingress and worker ready again", 60)
            await settle(stack)
            scraped = (await back.get("/metrics")).text
    finally:
        await proxy.close()
    (await reconcile(stack, provider.payouts)).assert_clean()
    work_queue = Topology(stack.namespace, RETRY_TIERS).work_queue
    assert f'payouts_queue_messages{{queue="{work_queue}"}}' in scraped

    ingress_lines, worker_lines = log_lines(ingress), log_lines(worker)
    answered = {
        line["event_id"] for line in ingress_lines if line["message"] == "callback answered"
    }
    processed = [line for line in worker_lines if line["message"] == "payout processed"]
    assert processed, "the worker logged no payout"
    assert {line["event_id"] for line in processed} <= answered, "a payout with no callback line"
    for line in processed:
        assert {
            "provider_instance",
            "transaction_id",
            "outcome",
            "answer_code",
            "lag_ms",
        } <= line.keys()
    everything = ingress.log() + worker.log()
    for secret in (OFFERWALL_KEY, ADJOE_TOKEN, AIGAME_KEY, BILLING_SECRET):
        assert secret not in everything
    stored = await stack.fetchval(
        "SELECT string_agg(attributes::text || raw_request::text, ' ') FROM payouts"
    )
    for payout in provider.payouts:
        for value in device_ids(payout.user_id).values():
            for written in (value, quote_plus(value)):
                assert written not in everything
                assert written not in stored
