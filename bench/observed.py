"""What the pipeline says about itself during a run: the worker's log line for each payout it
settled, written after its crediting transaction committed, and the ingress's /metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "IngressCounts",
    "Settled",
    "WorkerCounts",
    "after_commit_ms",
    "ingress_counts",
    "latest_settled",
    "parse_ingress_counts",
    "parse_worker_counts",
    "percentile",
    "read_settled",
    "worker_counts",
]

# The worker's line per settled delivery (workers/consumer.py, `_log_result`): its time, its
# outcome and `lag_ms`, the time from the ingress receiving the callback to this line, written
# once the transaction that settled it committed.
_SETTLED = '"message": "payout processed"'
_TS = re.compile(r'"ts": "([^"]+)"')
_OUTCOME = re.compile(r'"outcome": "([a-z_]+)"')
_LAG = re.compile(r'"lag_ms": ([\d.]+)')
_EVENT_ID = re.compile(r'"event_id": "([^"]+)"')
# The ingress's line per callback (ingress/app.py): `latency_ms`, from the request's arrival to
# its answer, which for the protocols that wait for the outcome comes after the commit.
_ANSWERED = '"message": "callback answered"'
_ACCEPTED = '"verdict": "accepted"'
_LATENCY = re.compile(r'"latency_ms": ([\d.]+)')
# Enough of a log's end to hold its last few lines.
_TAIL_BYTES = 16_384


@dataclass(frozen=True)
class Settled:
    """The payouts a worker credited since some point of its log."""

    # Request-to-credit latency of each credited payout, commit included, in milliseconds.
    credit_lags_ms: list[float]
    # When the last of them was credited (after its commit); None when none was.
    last_credit: datetime | None
    # The same latencies by event id, for the lines that name their event.
    lag_by_event: dict[str, float]

    def percentile(self, fraction: float) -> float:
        return percentile(self.credit_lags_ms, fraction)


def percentile(values: list[float], fraction: float) -> float:
    """Interpolated between the two nearest values (as Postgres's `percentile_cont`); 0 when
    there are none."""
    ordered = sorted(values)
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
    by_event: dict[str, float] = {}
    last: datetime | None = None
    with log.open("rb") as lines:
        lines.seek(offset)
        for raw in lines:
            line = raw.decode(errors="replace")
            facts = _line_facts(line)
            if facts is not None and facts[1] == "credited":
                last = facts[0]
                lags.append(facts[2])
                if event_id := _EVENT_ID.search(line):
                    by_event[event_id.group(1)] = facts[2]
    return Settled(lags, last, by_event)


def after_commit_ms(ingress_log: Path, offset: int, settled: Settled) -> list[float]:
    """For each accepted callback of the ingress log `ingress_log` (from byte `offset` on) whose
    payout `settled` holds: its answer time less its request-to-credit latency, which is the
    time from the commit to the answer (the outcome's notification, the wake-up of the waiting
    request, the response) plus the verification before the event was built."""
    gaps: list[float] = []
    with ingress_log.open("rb") as lines:
        lines.seek(offset)
        for raw in lines:
            line = raw.decode(errors="replace")
            if _ANSWERED not in line or _ACCEPTED not in line:
                continue
            event_id, latency = _EVENT_ID.search(line), _LATENCY.search(line)
            if event_id is None or latency is None:
                raise RuntimeError(f"an ingress line the bench cannot read: {line[:300]}")
            lag = settled.lag_by_event.get(event_id.group(1))
            if lag is not None:
                gaps.append(float(latency.group(1)) - lag)
    return gaps


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
class _Counts:
    """Cumulative counts read at one moment; one reading less an earlier one is what happened
    between them, field by field."""

    def __sub__(self, earlier: Self) -> Self:
        return type(self)(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))


@dataclass(frozen=True)
class IngressCounts(_Counts):
    """Cumulative counts from the ingress's /metrics, to be subtracted from a later reading."""

    answered: float  # callbacks answered, whatever the verdict
    refused: float  # callbacks answered with any verdict but "accepted"
    events: float  # events published (the sum of payouts_ingress_events_per_message)
    messages: float  # messages published (its count)
    publish_seconds: float  # time callbacks waited for their message's confirm (its sum)
    publishes: float  # callbacks that waited for one (its count)


async def ingress_counts(metrics_url: str) -> IngressCounts:
    return parse_ingress_counts(await _exposition(metrics_url))


def parse_ingress_counts(exposition: str) -> IngressCounts:
    answered = refused = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "payouts_ingress_requests_total":
                answered += sample.value
                if sample.labels.get("verdict") != "accepted":
                    refused += sample.value
    sums = _sums(
        exposition,
        "payouts_ingress_events_per_message_sum",
        "payouts_ingress_events_per_message_count",
        "payouts_ingress_publish_seconds_sum",
        "payouts_ingress_publish_seconds_count",
    )
    return IngressCounts(answered, refused, *sums)


@dataclass(frozen=True)
class WorkerCounts(_Counts):
    """Cumulative counts from a worker's /metrics, to be subtracted from a later reading."""

    transactions: float  # crediting transactions committed (payouts_worker_commit_seconds_count)
    transaction_seconds: float  # their time from opening to commit (its sum)
    batched: float  # payouts they applied (payouts_worker_batch_size_sum)


async def worker_counts(metrics_url: str) -> WorkerCounts:
    return parse_worker_counts(await _exposition(metrics_url))


def parse_worker_counts(exposition: str) -> WorkerCounts:
    return WorkerCounts(
        *_sums(
            exposition,
            "payouts_worker_commit_seconds_count",
            "payouts_worker_commit_seconds_sum",
            "payouts_worker_batch_size_sum",
        )
    )


async def _exposition(metrics_url: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(metrics_url)
    response.raise_for_status()
    return response.text


def _sums(exposition: str, *names: str) -> list[float]:
    """Each named sample's values added up over their labels, in the order named."""
    totals = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return list(totals.values())
