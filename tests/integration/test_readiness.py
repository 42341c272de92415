"""A worker's /readyz against a real Postgres: ready while consuming, the database reported."""

from __future__ import annotations

import asyncpg

from workers.readiness import WorkerReadiness


async def test_a_worker_not_consuming_is_not_ready(pool: asyncpg.Pool) -> None:
    assert await WorkerReadiness(pool).report() == (
        False,
        {"broker": "not consuming", "database": "reachable"},
    )


async def test_a_consuming_worker_is_ready(pool: asyncpg.Pool) -> None:
    readiness = WorkerReadiness(pool)
    readiness.set_consuming(True)
    assert await readiness.report() == (True, {"broker": "consuming", "database": "reachable"})


async def test_a_consuming_worker_without_its_database_stays_ready_and_says_so() -> None:
    """It still moves what it cannot credit to the retry tiers: better than leaving it queued."""
    # Port 1: nothing listens there, so every connection attempt is refused.
    unreachable = await asyncpg.create_pool("postgresql://payouts@127.0.0.1:1/none", min_size=0)
    try:
        readiness = WorkerReadiness(unreachable)
        readiness.set_consuming(True)
        assert await readiness.report() == (
            True,
            {"broker": "consuming", "database": "unreachable"},
        )
    finally:
        await unreachable.close()
