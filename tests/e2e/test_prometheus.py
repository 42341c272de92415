"""A real Prometheus, configured as shipped (only the targets made local), scraping a running
ingress and worker: the targets are up, the key series say what the stack did, every dashboard
query works against them, a message dead-lettered fires its alert, and stopping the worker sets
off the no-consumer alert."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import aio_pika
import httpx
import pytest
from prometheus_client import Counter

from schema.topology import ROUTING_KEY, Topology
from tests.deploy.test_compose_stack import DASHBOARD, METRIC_NAME, exported_metrics
from tests.deploy.test_prometheus_rules import alert_names
from tests.e2e.live_prometheus import LivePrometheus, live_prometheus
from tests.e2e.provider import ProviderSimulator
from tests.e2e.stack import RETRY_TIERS
from tests.polling import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

# The broker's own exporter (the rabbitmq_prometheus plugin), where the local broker would serve
# it. The shipped job is kept; the local broker need not run the plugin, so its target is not
# waited for.
RABBITMQ_EXPORTER = "127.0.0.1:15692"
# What Grafana's $__rate_interval becomes here: several of the test's 1 s scrapes.
RATE_INTERVAL = "30s"
# The counters that have no series until their first event (labelled, with no child yet), which
# this test does not cause: a panel over them may return nothing, so long as the code exports
# them as counters. The ingress's multiprocess exposition does not even declare them before then.
FIRST_EVENT_COUNTERS = {
    "payouts_ingress_outcome_unavailable",  # a JSON callback answered "try again"
    "payouts_proof_api_requests",  # the proof API is off in this stack
    "payouts_proof_api_key_matches",
    "payouts_worker_retries",  # a failed crediting attempt
}
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
NO_CONSUMER = "PayoutsNoWorkerConsuming"
DEAD_LETTERED = "PayoutsDeadLettered"


async def targets_up(prometheus: LivePrometheus, *jobs: str) -> bool:
    up = await prometheus.query('up{job=~"' + "|".join(jobs) + '"} == 1')
    return {sample["metric"]["job"] for sample in up} == set(jobs)


async def publish_unreadable_message(stack: Stack) -> None:
    """A message no worker can read, which goes straight to the dead-letter queue."""
    topology = Topology(stack.namespace, RETRY_TIERS)
    connection = await aio_pika.connect(stack.broker_url)
    async with connection:
        exchange = await (await connection.channel()).get_exchange(topology.exchange)
        await exchange.publish(aio_pika.Message(b"[]", message_id="unreadable"), ROUTING_KEY)


async def rule_states(prometheus: LivePrometheus) -> dict[str, str]:
    groups = (await prometheus.api("rules", type="alert"))["groups"]
    return {rule["name"]: rule["state"] for group in groups for rule in group["rules"]}


async def value(prometheus: LivePrometheus, expression: str) -> float:
    (sample,) = await prometheus.query(expression)
    return float(sample["value"][1])


async def dashboard_problems(prometheus: LivePrometheus) -> list[str]:
    """Each panel query that returns nothing, unless every metric it names that Prometheus has
    no series of is a first-event counter; and each result row without a label its legend
    shows."""
    names = set(await prometheus.api("label/__name__/values"))
    exported = exported_metrics()
    problems = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        for target in panel.get("targets", []):
            expression = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            if result := await prometheus.query(expression):
                # Each row carries the labels its legend shows: the provider instance as
                # `exported_instance`, say, which is what Prometheus makes of ours.
                legend = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
                for row in result:
                    if missing := legend - row["metric"].keys():
                        where = f"panel {panel['title']!r}"
                        problems.append(f"{where}: {row['metric']} lacks {missing}")
                continue
            for series in sorted(set(METRIC_NAME.findall(expression)) - names):
                name = series.removesuffix("_total")
                if name not in FIRST_EVENT_COUNTERS or not isinstance(exported[name], Counter):
                    problems.append(f"panel {panel['title']!r}: no series {series}")
    return problems


async def test_prometheus_scrapes_the_stack_and_pages_when_no_worker_consumes(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.start_ingress()
    worker = await stack.start_worker()
    provider = ProviderSimulator(stack, seed=24)
    await provider.run(20)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        # A copy of an accepted callback with its amount changed: refused, and counted.
        assert (await client.get(provider.payouts[0].tampered_path)).status_code != 200
    # The worker's first dead letter of its reason: its counter's series appears at 1, so the
    # alert must see it in the dead-letter queue's depth.
    await publish_unreadable_message(stack)
    targets = {
        "payouts-ingress": [f"127.0.0.1:{stack.port}"],
        "payouts-worker": [f"127.0.0.1:{worker.status_port}"],
        "rabbitmq": [RABBITMQ_EXPORTER],
    }
    async with live_prometheus(tmp_path / "prometheus", targets) as prometheus:

        async def scraped() -> bool:
            # Two scrapes at least, so that every rate over the counters has its two samples;
            # and the dead letter counted.
            return (
                await targets_up(prometheus, "payouts-ingress", "payouts-worker")
                and bool(
                    await prometheus.query(f"rate(payouts_ingress_requests_total[{RATE_INTERVAL}])")
                )
                and bool(await prometheus.query("payouts_worker_dead_lettered_total"))
            )

        await wait_until(scraped, f"the stack's targets scraped; log:\n{prometheus.log()}")
        accepted = sum(payout.accepted for payout in provider.payouts)
        assert accepted == 20
        assert await value(prometheus, "sum(payouts_worker_payouts_total)") >= accepted
        assert (
            await value(prometheus, 'sum(payouts_ingress_requests_total{verdict="accepted"})')
            >= accepted
        )
        assert await value(prometheus, "sum(payouts_ingress_verification_failures_total)") >= 1
        assert await value(prometheus, "min(payouts_ingress_broker_connected)") == 1
        assert await value(prometheus, "sum(payouts_worker_consuming)") == 1
        assert await prometheus.query('payouts_queue_messages{queue=~".*\\\\.work"}')

        problems = await dashboard_problems(prometheus)
        assert problems == [], "\n".join(problems)

        states = await rule_states(prometheus)
        assert set(states) == alert_names(), "Prometheus did not load the shipped alerts"

        async def consumer_seen() -> bool:
            # Evaluated before the worker's first scrape, the rule found the series absent and
            # went pending; the first evaluation after it clears it.
            return (await rule_states(prometheus))[NO_CONSUMER] == "inactive"

        await wait_until(consumer_seen, f"{NO_CONSUMER} inactive while the worker consumes")

        async def dead_letter_paged() -> bool:
            # The depth is read from the broker every worker.queue_sample_seconds (15 s).
            return (await rule_states(prometheus))[DEAD_LETTERED] == "firing"

        await wait_until(dead_letter_paged, f"{DEAD_LETTERED} firing", limit_seconds=60)
        active = {
            name for name, state in (await rule_states(prometheus)).items() if state != "inactive"
        }
        assert active == {DEAD_LETTERED}, "only the dead letter sets off an alert"

        worker.stop()

        async def paging() -> bool:
            alerts = (await prometheus.api("alerts"))["alerts"]
            return NO_CONSUMER in {alert["labels"]["alertname"] for alert in alerts}

        # Pending, not firing: the shipped rule waits 2 minutes before it pages, and the test
        # does not wait them out.
        await wait_until(paging, f"{NO_CONSUMER} pending after the worker stopped")
        assert (await rule_states(prometheus))[NO_CONSUMER] in {"pending", "firing"}
