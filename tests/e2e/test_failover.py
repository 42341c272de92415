"""Failover runs: the pipeline under steady provider traffic while a clustered service fails
over, then the same reconciliation as the fault runs. Lost, duplicated and unexpected must be
zero, and providers must have been told only "accepted" or "try again"."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.e2e.fault_runs import (
    BURST,
    CREDITED_SINCE,
    PAYOUTS_PER_SECOND,
    TRAFFIC_SECONDS,
    assert_failover_clean,
)
from tests.e2e.provider import ProviderSimulator, WalletPlatform
from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.clusters.postgres_replication import PostgresReplication
    from tests.e2e.stack import Stack

pytestmark = pytest.mark.cluster

# Credits held at their last step for a moment, so the kill cuts workers' transactions
# mid-batch every run (unheld, a batch takes milliseconds and the kill mostly fell between).
HOLD_CREDITS = "BEGIN; LOCK TABLE ledger_entries IN EXCLUSIVE MODE"
WORKER_MID_BATCH = """
SELECT count(*) > 0 FROM pg_stat_activity
WHERE datname = 'payouts' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


async def test_postgres_primary_killed_and_standby_promoted_mid_load(
    replicated_stack: Stack, postgres_replication: PostgresReplication
) -> None:
    stack, pair = replicated_stack, postgres_replication
    await stack.start_ingress()
    for _ in range(2):
        await stack.start_worker()
    provider, platform = ProviderSimulator(stack, seed=21), WalletPlatform(stack, seed=22)
    standby = await asyncpg.connect(pair.standby.url("payouts"))
    primary = await asyncpg.connect(pair.primary.url("payouts"))
    timings: dict[str, float] = {}
    try:

        async def credited_since(moment: datetime) -> bool:
            return await standby.fetchval(CREDITED_SINCE, moment) is not None

        async def worker_mid_batch() -> bool:
            return bool(await primary.fetchval(WORKER_MID_BATCH))

        async with (
            platform.traffic(),
            provider.traffic(PAYOUTS_PER_SECOND, TRAFFIC_SECONDS, burst=BURST),
        ):
            # Credits flowing, so workers are mid-batch and wallet requests wait for outcomes.
            started = datetime.now(UTC)
            await wait_until(lambda: credited_since(started), "first credits before the fault")
            await asyncio.sleep(1)
            await primary.execute(HOLD_CREDITS)
            await wait_until(worker_mid_batch, "a worker's batch waiting on the primary")
            killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
            await pair.kill_primary()
            await pair.promote_standby()
            timings["promoted"] = time.monotonic() - killed_at
            await wait_until(lambda: credited_since(killed_wall), "a credit after the failover", 60)
            timings["first_credit"] = time.monotonic() - killed_at
    finally:
        await standby.close()
        primary.terminate()  # its server was killed: nothing to say goodbye to
    print(
        f"\nRECOVERY postgres-primary-killed first_credit_s={timings['first_credit']:.2f} "
        f"promoted_s={timings['promoted']:.2f}"
    )
    await assert_failover_clean(stack, provider, provider.payouts + platform.payouts)
    assert any("transient failure" in p.log() for p in stack.processes), "no batch was cut"
