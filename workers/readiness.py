"""A worker's answer to /readyz: ready while it holds a consumer on the work queue.

The database is reported, not required: without it the worker still takes deliveries and moves
them to the retry tiers (docs/operations.md#health).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from workers import metrics

if TYPE_CHECKING:
    import asyncpg

    from workers.status_server import Readiness

__all__ = ["WorkerReadiness"]

# A readiness probe's look at the database: short, it only reports.
DATABASE_CHECK_SECONDS = 1.0


class WorkerReadiness:
    """Whether the worker consumes (also the payouts_worker_consuming gauge), and `pool`'s
    database as a probe finds it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._consuming = False

    def set_consuming(self, consuming: bool) -> None:
        self._consuming = consuming
        metrics.CONSUMING.set(consuming)

    async def report(self) -> Readiness:
        try:
            async with asyncio.timeout(DATABASE_CHECK_SECONDS), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            database = "reachable"
        except Exception:  # any failure to answer in time is "unreachable" to the operator
            database = "unreachable"
        return self._consuming, {
            "broker": "consuming" if self._consuming else "not consuming",
            "database": database,
        }
