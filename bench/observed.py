"""What the pipeline says about itself during a run: the worker's log line for each payout it
settled, written after its crediting transaction committed, and the ingress's /metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "IngressCounts",
    "Settled",
    "ingress_counts",
    "latest_settled",
    "parse_ingress_counts",
    "read_settled",
]

# The worker's line per settled delivery (workers/consumer.py, `_log_result`): its time, its
# outcome and `lag_ms`, the time from the ingress receiving the callback to this line, written
# once the transaction that settled it committed.
_SETTLED = '"message": "payout processed"'
_TS = re.compile(r'"ts": "([^"]+)"')
_OUTCOME = re.compile(r'"outcome": "([a-z_]+)"')
_LAG = re.compile(r'"lag_ms": ([\d.]+)')
# Enough of a log's end to hold its last few lines.
_TAIL_BYTES = 16_384


@dataclass(frozen=True)
class Settled:
    """The payouts a worker credited since some point of its log."""

    # Request-to-credit latency of each credited payout, commit included, in milliseconds.
    credit_lags_ms: list[float]
    # When the last of them was credited (after its commit); None when none was.
    last_credit: datetime | None

    def percentile(self, fraction: float) -> float:
        """Of the latencies, interpolated between the two nearest (as Postgres's
        `percentile_cont`); 0 when there are none."""
        ordered = sorted(self.credit_lags_ms)
        if not ordered:
            return 0.0
        position = fraction * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _line_facts(line: str) -> tuple[datetime, str, float] | None:
    if _SETTLED not in line:
        return None
    ts, outcome, lag = _TS.search(line), _OUTCOME.search(line), _LAG.search(line)
    if ts is None or outcome is None or lag is None:
        raise RuntimeError(f"a worker line the bench cannot read: {line[:300]}")
    return datetime.fromisoformat(ts.group(1)), outcome.group(1), float(lag.group(1))


def read_settled(log: Path, offset: int) -> Settled:
    """The credited payouts of the worker log `log` from byte `offset` on."""
    lags: list[float] = []
    last: datetime | None = None
    with log.open("rb") as lines:
        lines.seek(offset)
        for raw in lines:
            facts = _line_facts(raw.decode(errors="replace"))
            if facts is not None and facts[1] == "credited":
                last = facts[0]
                lags.append(facts[2])
    return Settled(lags, last)


def latest_settled(log: Path) -> tuple[datetime, float] | None:
    """The time and the lag (in seconds) of the last delivery the worker log `log` says was
    settled, from its last few lines; None when they hold none."""
    with log.open("rb") as lines:
        size = lines.seek(0, 2)
        lines.seek(max(0, size - _TAIL_BYTES))
        tail = lines.read().decode(errors="replace").splitlines()
    for line in reversed(tail[1:] if size > _TAIL_BYTES else tail):  # the first may be cut
        facts = _line_facts(line)
        if facts is not None:
            return facts[0], facts[2] / 1000
    return None


@dataclass(frozen=True)
class IngressCounts:
    """Cumulative counts from the ingress's /metrics, to be subtracted from a later reading."""

    answered: float  # callbacks answered, whatever the verdict
    refused: float  # callbacks answered with any verdict but "accepted"
    events: float  # events published (the sum of payouts_ingress_events_per_message)
    messages: float  # messages published (its count)

    def __sub__(self, earlier: IngressCounts) -> IngressCounts:
        return IngressCounts(
            self.answered - earlier.answered,
            self.refused - earlier.refused,
            self.events - earlier.events,
            self.messages - earlier.messages,
        )


async def ingress_counts(metrics_url: str) -> IngressCounts:
    async with httpx.AsyncClient() as client:
        response = await client.get(metrics_url)
    response.raise_for_status()
    return parse_ingress_counts(response.text)


def parse_ingress_counts(exposition: str) -> IngressCounts:
    answered = refused = events = messages = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "payouts_ingress_requests_total":
                answered += sample.value
                if sample.labels.get("verdict") != "accepted":
                    refused += sample.value
            elif sample.name == "payouts_ingress_events_per_message_sum":
                events += sample.value
            elif sample.name == "payouts_ingress_events_per_message_count":
                messages += sample.value
    return IngressCounts(answered, refused, events, messages)
