"""The ingress's own Postgres pool (proof and orders APIs) is sized and bounded by the settings."""

from __future__ import annotations

import contextlib

import pytest

from ingress.database import IngressDatabase
from schema.errors import DatabaseUnavailable
from schema.settings import DatabaseSettings


async def test_the_pool_holds_at_most_api_pool_max_size_and_gives_up_after_the_timeout(
    database_url: str,
) -> None:
    database = IngressDatabase(
        DatabaseSettings(url=database_url, api_pool_max_size=2, api_acquire_timeout_seconds=0.3)
    )
    await database.open()
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(database.connection())
            with pytest.raises(DatabaseUnavailable):
                async with database.connection():
                    pass
            assert not await database.reachable()
        assert await database.reachable()
    finally:
        await database.close()


async def test_a_statement_longer_than_api_statement_timeout_seconds_is_cut_off(
    database_url: str,
) -> None:
    database = IngressDatabase(
        DatabaseSettings(url=database_url, api_statement_timeout_seconds=0.2)
    )
    await database.open()
    try:
        with pytest.raises(DatabaseUnavailable, match="TimeoutError"):
            async with database.connection() as conn:
                await conn.execute("SELECT pg_sleep(5)")
    finally:
        await database.close()
