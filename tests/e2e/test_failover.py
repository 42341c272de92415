"""Failover runs: the pipeline under steady provider traffic while a clustered service fails
over, then the same reconciliation as the fault runs. Lost, duplicated and unexpected must be
zero, and providers must have been told only "accepted" or "try again"."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest

from tests.e2e.provider import Payout, ProviderSimulator, reconcile
from tests.e2e.test_faults import (
    BURST,
    PAYOUTS_PER_SECOND,
    TRAFFIC_SECONDS,
    assert_envelopes_published,
    settle,
)
from tests.e2e.test_pipeline import settle_like_the_platform
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.clusters.postgres_replication import PostgresReplication
    from tests.e2e.stack import Stack

pytestmark = pytest.mark.cluster

# Spec 001 payouts a second, each request held open by the ingress until its outcome is known.
WALLET_PAYOUTS_PER_SECOND = 5.0
# What a provider may be told during a failover: accepted, or (503 / spec 001's 800100) try again.
TRY_AGAIN = {503, 800100}
CREDITED_SINCE = "SELECT min(credited_at) FROM payouts WHERE credited_at > $1"
# Credits held at their last step for a moment, so the kill cuts workers' transactions
# mid-batch every run (unheld, a batch takes milliseconds and the kill mostly fell between).
HOLD_CREDITS = "BEGIN; LOCK TABLE ledger_entries IN EXCLUSIVE MODE"
WORKER_MID_BATCH = """
SELECT count(*) > 0 FROM pg_stat_activity
WHERE datname = 'payouts' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


class WalletPlatform:
    """Spec 001's game platform: payouts sent at a steady rate, each re-sent until its answer is
    success (`settle_like_the_platform` fails on any answer but success and "try again")."""

    def __init__(self, stack: Stack, seed: int) -> None:
        self._stack = stack
        self._rng = random.Random(seed)
        self.payouts: list[Payout] = []

    @contextlib.asynccontextmanager
    async def traffic(self) -> AsyncIterator[None]:
        over = asyncio.Event()
        async with httpx.AsyncClient(base_url=self._stack.base_url) as client:
            sender = asyncio.create_task(self._send_until(over, client))
            try:
                yield
            finally:
                over.set()
                await sender

    async def _send_until(self, over: asyncio.Event, client: httpx.AsyncClient) -> None:
        async with asyncio.TaskGroup() as group:
            while not over.is_set():
                group.create_task(self._settle_one(client))
                await asyncio.sleep(1 / WALLET_PAYOUTS_PER_SECOND)

    async def _settle_one(self, client: httpx.AsyncClient) -> None:
        user, amount = f"player-{self._rng.randrange(10)}", self._rng.randint(1, 500)
        fields: dict[str, object] = {
            "agent_id": "agent001",
            "user_id": user,
            "game_id": "101",
            "inst_id": "000002",
            "shoe_id": 1,
            "round_id": 1,
            "bet_txn_id": uuid.uuid4().hex[:24],
            "win_amount": str(amount),
            "pay_out_time": 1763800000000,
            "currency": "VND2",
        }
        payout = Payout("aigame", str(fields["bet_txn_id"]), user, "VND2", amount, "", "")
        self.payouts.append(payout)
        payout.answers.extend(
            answer["code"] for answer in await settle_like_the_platform(client, fields)
        )


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
        f"\npostgres failover: kill -9 + promote {timings['promoted']:.2f}s, "
        f"first credit after the kill {timings['first_credit']:.2f}s"
    )
    await settle(stack)
    result = await reconcile(stack, provider.payouts + platform.payouts)
    assert provider.tampered_answers.keys() <= {403}, provider.tampered_answers
    await assert_envelopes_published(stack, result)
    print(f"reconciliation: {result.summary()} {dict(result.details['answers'])}")
    result.assert_clean()
    assert set(result.details["answers"]) <= {200, *TRY_AGAIN}, result.details["answers"]
    assert any("transient failure" in p.log() for p in stack.processes), "no batch was cut"
