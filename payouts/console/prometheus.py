"""The ingress's callback counts over the last hour and day, read from the Prometheus that scrapes
it (`console.prometheus_url`): by verdict (accepted, each refusal reason, try again) and by the
secret that matched. Every ingress process and replica is summed, which its own /metrics could
not give. A Prometheus that does not answer is a `MetricsUnavailable`, which the page shows."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from schema.logs import redacted_url

__all__ = ["WINDOWS", "CallbackCounts", "MetricsUnavailable", "callback_counts"]

# The windows the page shows, as PromQL ranges.
WINDOWS = ("1h", "1d")
# A page waits this long for Prometheus at most, then shows the database figures without it.
TIMEOUT_SECONDS = 3.0
# Prometheus moves the ingress's own `instance` label (the provider instance) to
# `exported_instance`, as the shipped scrape configuration leaves it (deploy/compose/prometheus).
# Accepted and "try again" from the answers; each refusal reason from the failures, which the
# ingress exports at 0 from its start, so that increase() sees even the first one.
BY_VERDICT = (
    'sum by (exported_instance, verdict) (increase(payouts_ingress_requests_total{{verdict=~"'
    'accepted|try_again"}}[{}]))'
)
BY_REASON = (
    "sum by (exported_instance, reason) (increase(payouts_ingress_verification_failures_total[{}]))"
)
BY_MATCH = "sum by (exported_instance, secret) (increase(payouts_ingress_secret_matches_total[{}]))"
# Each query, the label it counts by, and whether it counts verdicts (else secrets).
QUERIES = (
    (BY_VERDICT, "verdict", True),
    (BY_REASON, "reason", True),
    (BY_MATCH, "secret", False),
)


class MetricsUnavailable(Exception):
    """Prometheus did not give the counts; the message says where and why."""


# instance -> label value -> one count per window, in the order of WINDOWS.
Counts = dict[str, dict[str, list[int]]]


@dataclass
class CallbackCounts:
    by_verdict: Counts = field(default_factory=dict)
    by_secret: Counts = field(default_factory=dict)


def _get(url: str) -> Any:
    # The URL's scheme is http or https: console.prometheus_url is checked when read.
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
        return json.load(answer)


async def _query(base_url: str, expression: str) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/api/v1/query?{urlencode({'query': expression})}"
    try:
        body = await asyncio.to_thread(_get, url)
    # Unreachable, an HTTP error, a server that does not speak HTTP, a body that is not JSON.
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise MetricsUnavailable(f"Prometheus at {redacted_url(base_url)}: {error}") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        problem = body.get("error") if isinstance(body, dict) else None
        raise MetricsUnavailable(
            f"Prometheus at {redacted_url(base_url)} refused the query: {problem or body!r}"
        )
    result = body.get("data", {}).get("result")
    if not isinstance(result, list):
        raise MetricsUnavailable(f"Prometheus at {redacted_url(base_url)}: no vector in {body!r}")
    return result


def _add(counts: Counts, samples: list[dict[str, Any]], label: str, window: int) -> None:
    for sample in samples:
        metric = sample.get("metric", {})
        instance, value = metric.get("exported_instance"), metric.get(label)
        if instance is None or value is None:
            continue
        per_window = counts.setdefault(instance, defaultdict(lambda: [0] * len(WINDOWS)))
        # increase() extrapolates to the window's edges: a count, shown whole.
        try:
            per_window[value][window] = round(float(sample["value"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise MetricsUnavailable(
                f"Prometheus answered a sample without a value: {sample!r}"
            ) from None


async def callback_counts(prometheus_url: str) -> CallbackCounts:
    """The counts of every provider instance over each of WINDOWS."""
    asked = [(query, window) for query in QUERIES for window in range(len(WINDOWS))]
    answers = await asyncio.gather(
        *(_query(prometheus_url, query[0].format(WINDOWS[window])) for query, window in asked)
    )
    counts = CallbackCounts()
    for ((_, label, verdicts), window), samples in zip(asked, answers, strict=True):
        _add(counts.by_verdict if verdicts else counts.by_secret, samples, label, window)
    return counts
