"""What the fault and failover runs share: the traffic's pace, waiting until the pipeline has
settled, running traffic around a fault, and the checks every run ends with."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from tests.e2e.provider import Payout, ProviderSimulator, Reconciliation, reconcile
from tests.metrics_reading import sample_value
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from tests.e2e.stack import Process, Stack

__all__ = [
    "BURST",
    "CREDITED_SINCE",
    "PAYOUTS_PER_SECOND",
    "TRAFFIC_SECONDS",
    "TRY_AGAIN",
    "ConfirmWatch",
    "assert_envelopes_published",
    "assert_failover_clean",
    "connected_to",
    "report_recovery",
    "run_under_fault",
    "settle",
]

# Traffic lasts at least this long, and until the fault is over, so each fault meets live
# traffic instead of an idle pipeline, however slowly a loaded machine runs it.
PAYOUTS_PER_SECOND = 25.0
TRAFFIC_SECONDS = 12.0
SETTLE_SECONDS = 120.0
# Callbacks arriving together, so the ingress (broker.max_events_per_message at its default)
# gathers them into envelopes and every fault meets envelopes as well as single events.
BURST = 8
EVENTS_PER_MESSAGE = "payouts_ingress_events_per_message"


async def settle(stack: Stack) -> None:
    """Until nothing waits in the work queue or a retry tier, twice in a row."""
    quiet = 0

    async def drained_twice() -> bool:
        nonlocal quiet
        quiet = quiet + 1 if await stack.pending() == 0 else 0
        return quiet >= 2

    try:
        await wait_until(drained_twice, "work and retry queues drained", SETTLE_SECONDS)
    except AssertionError as error:
        troubles = "\n".join(process.troubles() for process in stack.processes)
        raise AssertionError(f"{error}; {await stack.pending()} pending\n{troubles}") from None


async def run_under_fault(
    stack: Stack,
    fault: Callable[[list[Process]], Awaitable[None]],
    *,
    seed: int,
    workers: int = 2,
    worker_database_url: str | None = None,
    worker_broker_url: str | None = None,
    ingress_broker_url: str | None = None,
) -> Reconciliation:
    await stack.start_ingress(broker_url=ingress_broker_url)
    running = [
        await stack.start_worker(database_url=worker_database_url, broker_url=worker_broker_url)
        for _ in range(workers)
    ]
    provider = ProviderSimulator(stack, seed)
    async with provider.traffic(PAYOUTS_PER_SECOND, TRAFFIC_SECONDS, burst=BURST):
        await fault(running)
    await settle(stack)
    result = await reconcile(stack, provider.payouts)
    assert provider.tampered_answers.keys() <= {403}, provider.tampered_answers
    await assert_envelopes_published(stack, result)
    return result


async def assert_envelopes_published(stack: Stack, result: Reconciliation) -> None:
    """Some of the messages the ingress published carried more than one event: the run tested
    envelopes, not only single-event messages. Their counts go into the run's details."""
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        exposition = (await client.get("/metrics")).text
    messages = int(sample_value(exposition, f"{EVENTS_PER_MESSAGE}_count"))
    single = int(sample_value(exposition, f"{EVENTS_PER_MESSAGE}_bucket", le="1.0"))
    result.details["messages"], result.details["enveloped"] = messages, messages - single
    assert messages > single, f"none of the {messages} messages carried more than one event"


# What a provider may be told during a failover: accepted, or (503 / spec 001's 800100) try again.
TRY_AGAIN = {503, 800100}
CREDITED_SINCE = "SELECT min(credited_at) FROM payouts WHERE credited_at > $1"
NODE_CONNECTED = "payouts_broker_node_connected"


async def connected_to(base_url: str, role: str, node: str) -> bool:
    """Whether the process serving /metrics at `base_url` holds its broker connection to `node`
    (as logs and metrics name it: `schema.logs.redacted_url`)."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        exposition = (await client.get("/metrics")).text
    return sample_value(exposition, NODE_CONNECTED, role=role, node=node) == 1


# The longest wait between two credits committed in [$1, $2], in seconds.
LONGEST_CREDIT_GAP = """
SELECT coalesce(extract(epoch FROM max(gap)), 0)::float8 FROM (
    SELECT credited_at - lag(credited_at) OVER (ORDER BY credited_at) AS gap
    FROM payouts WHERE credited_at BETWEEN $1 AND $2
) AS gaps
"""
CONFIRMED_PUBLISHES = "payouts_ingress_publish_seconds_count"
CONFIRMS_SAMPLE_SECONDS = 0.1
# How far before a fault the credit gaps are read from: the runs let traffic flow longer than
# that before each fault, so the first gap starts at the last credit before it.
LOOK_BEFORE = timedelta(seconds=2)


class ConfirmWatch:
    """The moments the ingress's count of confirmed publishes grew, sampled every 0.1 s from its
    /metrics while traffic runs: how long publishing stalled around a fault, as a provider felt
    it, measured from outside the process."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self.grew_at: list[datetime] = []

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        sampler = asyncio.create_task(self._sample())
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    async def _sample(self) -> None:
        last = 0.0
        async with httpx.AsyncClient(base_url=self._base_url, timeout=2) as client:
            while True:
                try:
                    exposition = (await client.get("/metrics")).text
                except httpx.TransportError:
                    exposition = ""  # a slow answer under load: the next sample will tell
                count = sample_value(exposition, CONFIRMED_PUBLISHES)
                if count > last:
                    self.grew_at.append(datetime.now(UTC))
                    last = count
                await asyncio.sleep(CONFIRMS_SAMPLE_SECONDS)

    def longest_gap(self, since: datetime, until: datetime) -> float:
        """The longest wait without a confirm from the last one before `since` to `until`."""
        before = [m for m in self.grew_at if m <= since]
        assert before, "no publish confirmed before the fault: start the fault later"
        moments = [before[-1], *(m for m in self.grew_at if since < m <= until), until]
        return max(
            (later - earlier).total_seconds() for earlier, later in itertools.pairwise(moments)
        )


async def report_recovery(
    stack: Stack, scenario: str, fault_at: datetime, over_at: datetime, confirms: ConfirmWatch
) -> dict[str, float]:
    """Prints `RECOVERY <scenario> first_credit_s=… publish_stall_s=… credit_stall_s=…`, one
    greppable line per fault: the time from the fault to the first credit after it, and the
    longest wait without a confirmed publish and without a credit from just before the fault
    until it was over (the node back, the partition healed)."""
    first_credit = await stack.fetchval(CREDITED_SINCE, fault_at)
    assert first_credit is not None, f"{scenario}: no credit after the fault"
    figures = {
        "first_credit_s": (first_credit - fault_at).total_seconds(),
        "publish_stall_s": confirms.longest_gap(fault_at, over_at),
        "credit_stall_s": await stack.fetchval(LONGEST_CREDIT_GAP, fault_at - LOOK_BEFORE, over_at),
    }
    print(f"\nRECOVERY {scenario} " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return figures


async def assert_failover_clean(
    stack: Stack, provider: ProviderSimulator, payouts: list[Payout]
) -> Reconciliation:
    """After a failover run's traffic: settled, then nothing lost, doubled or unexpected among
    `payouts` (the provider's and any other sender's), and every answer "accepted" or "try
    again"."""
    await settle(stack)
    result = await reconcile(stack, payouts)
    assert provider.tampered_answers.keys() <= {403}, provider.tampered_answers
    await assert_envelopes_published(stack, result)
    print(f"reconciliation: {result.summary()} {dict(result.details['answers'])}")
    result.assert_clean()
    assert set(result.details["answers"]) <= {200, *TRY_AGAIN}, result.details["answers"]
    return result
