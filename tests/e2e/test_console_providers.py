"""The Providers page with a real Prometheus scraping a real ingress: callbacks accepted and
refused by reason, and the secret that matched, over the last hour and day."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from payouts.console.app import create_app
from schema.settings import load_settings
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    SESSION_SECRET,
    client,
    console_settings,
    signed_in_token,
)
from tests.e2e.live_prometheus import LivePrometheus, live_prometheus
from tests.e2e.stack import OFFERWALL_KEY, free_port
from tests.polling import wait_until
from tests.signing import offerwall_query

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

# increase() extrapolates to the window's end, up to a scrape interval (1 s here) past the last
# sample: over a series this many seconds long, 3 counts read as less than 3.5, so shown as 3.
SERIES_SECONDS = 8


def row_counts(section: str, verdict_or_secret: str) -> list[int]:
    found = re.search(
        rf"<td>{re.escape(verdict_or_secret)}\b.*?</td>\s*<td>(\d+)</td><td>(\d+)</td>",
        section,
        re.S,
    )
    assert found, f"no row for {verdict_or_secret}:\n{section}"
    return [int(found.group(1)), int(found.group(2))]


async def total(prometheus: LivePrometheus, expression: str) -> float:
    samples = await prometheus.query(expression)
    return sum(float(sample["value"][1]) for sample in samples)


async def test_the_providers_page_shows_what_prometheus_counted(stack: Stack) -> None:
    await stack.start_ingress()
    targets = {
        "payouts-ingress": [f"127.0.0.1:{stack.port}"],
        # Nothing listens there: the page reads the ingress's series only.
        "payouts-worker": [f"127.0.0.1:{free_port()}"],
        "rabbitmq": [f"127.0.0.1:{free_port()}"],
    }
    async with live_prometheus(stack.tmp_path / "prometheus", targets) as prometheus:
        secrets = 'payouts_ingress_secret_matches_total{exported_instance="offerwall"}'

        async def scraped() -> bool:
            return bool(await prometheus.query(secrets))

        await wait_until(scraped, "Prometheus scraped the ingress's series")
        first_scrape = time.monotonic()
        async with httpx.AsyncClient(base_url=stack.base_url) as provider:
            for _ in range(3):
                params = {
                    "user_id": "player-1",
                    "amount": "5",
                    "trans_id": uuid.uuid4().hex,
                    "send_time": "1763800000",
                }
                signed = await provider.get(
                    f"/callbacks/offerwall?{offerwall_query(params, OFFERWALL_KEY)}"
                )
                assert signed.status_code == 200, signed.text
            forged = await provider.get(f"/callbacks/offerwall?{offerwall_query(params, 'forged')}")
            assert forged.status_code == 403

        async def counted() -> bool:
            accepted = (
                'payouts_ingress_requests_total{exported_instance="offerwall",verdict="accepted"}'
            )
            refused = (
                "payouts_ingress_verification_failures_total"
                '{exported_instance="offerwall",reason="bad_signature"}'
            )
            return await total(prometheus, accepted) == 3 and await total(prometheus, refused) == 1

        await wait_until(counted, "Prometheus scraped the callbacks' counts")
        await asyncio.sleep(max(0.0, first_scrape + SERIES_SECONDS - time.monotonic()))
        settings = load_settings(stack.config_path, {})
        settings = settings.model_copy(
            update={
                "console": console_settings(
                    stack.database_url, prometheus_url=str(prometheus.client.base_url)
                ).console
            }
        )
        async with client(create_app(settings, SESSION_SECRET)) as browser:
            await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
            page = (await browser.get("/providers")).text
    assert "metrics-problem" not in page
    offerwall = page.split('id="provider-offerwall"')[1].split("</section>")[0]
    assert row_counts(offerwall, "accepted") == [3, 3]
    assert row_counts(offerwall, "bad_signature") == [1, 1]
    assert row_counts(offerwall, "ip_not_allowed") == [0, 0]
    assert row_counts(offerwall, "E2E_OFFERWALL_KEY") == [3, 3]
    # Another instance on the same secret saw nothing.
    strict = page.split('id="provider-offerwall-strict"')[1].split("</section>")[0]
    assert row_counts(strict, "accepted") == [0, 0]
