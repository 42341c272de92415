"""The payout search's plans: the newest page and each narrow filter read an index."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from payouts.actions.inspection import SEARCH_PAYOUTS, PayoutFilter, search_arguments
from payouts.actions.setup import apply_migrations
from tests.query_plans import indexes_read

if TYPE_CHECKING:
    import asyncpg

# 20,000 payouts of 200 users, one a minute from 2026-01-01, appended in the order received.
FILL = """
INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                     currency, signature, create_account, status, outcome, answer_code,
                     raw_request, received_at)
SELECT 'ow', 'tx-' || n, gen_random_uuid(), 'offerwall_md5', 'user-' || (n % 200), 1, 'COIN',
       'sig-' || n, true, 'held', 'held_unknown_account', '200', '{}',
       timestamptz '2026-01-01 00:00+00' + n * interval '1 minute'
FROM generate_series(1, 20000) AS n
"""


@pytest.mark.parametrize(
    ("filters", "before", "index"),
    [
        (PayoutFilter(), None, "payouts_by_received_at"),
        (PayoutFilter(), 10_000, "payouts_by_received_at"),
        (PayoutFilter(user_id="user-7"), None, "payouts_by_user"),
        (PayoutFilter(user_id="user-7"), 10_007, "payouts_by_user"),
        (PayoutFilter(transaction_id="tx-77"), None, "payouts_by_transaction"),
        (PayoutFilter(since=datetime(2026, 1, 1, 2, tzinfo=UTC)), None, "payouts_by_received_at"),
        (
            PayoutFilter(
                since=datetime(2026, 1, 1, 2, tzinfo=UTC), until=datetime(2026, 1, 1, 4, tzinfo=UTC)
            ),
            None,
            "payouts_by_received_at",
        ),
    ],
)
async def test_a_filter_reads_its_index(
    pool: asyncpg.Pool, filters: PayoutFilter, before: int | None, index: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(FILL)
        await conn.execute("ANALYZE payouts")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {SEARCH_PAYOUTS}", *search_arguments(filters, before, 51)
        )
    top = json.loads(plan)[0]["Plan"]
    assert index in indexes_read(top), plan
    assert "Seq Scan" not in plan, plan


# What docs/operations.md ("Upgrading") tells an operator to run before migrating a large table.
BUILT_BEFOREHAND = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS payouts_by_received_at"
    " ON payouts (received_at, payout_id)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS payouts_by_user"
    " ON payouts (user_id, received_at, payout_id)",
)


async def test_the_migration_keeps_the_search_indexes_built_beforehand(pool: asyncpg.Pool) -> None:
    """Built without blocking before the upgrade, the indexes are found by the migration, which
    then applies instead of failing on names that exist."""
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM schema_migrations WHERE version = '0005_payout_search'")
        await conn.execute("DROP INDEX payouts_by_received_at, payouts_by_user")
        for statement in BUILT_BEFOREHAND:
            await conn.execute(statement)  # CONCURRENTLY: outside any transaction
        assert await apply_migrations(conn) == ["0005_payout_search"]
        names = {
            row["indexname"]
            for row in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'payouts'"
            )
        }
    assert {"payouts_by_received_at", "payouts_by_user"} <= names
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    assert all(f"`{statement};`" in operations for statement in BUILT_BEFOREHAND)
