"""The Postgres primary/synchronous-standby fixture does what failover tests rely on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from tests.clusters.postgres_replication import PostgresReplication

pytestmark = pytest.mark.cluster


async def database_marked(pair: PostgresReplication, mark: str) -> str:
    """A new database holding one committed row, `mark`; its multi-host URL."""
    url = await pair.create_database("smoke")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE marks (mark text)")
        await conn.execute("INSERT INTO marks VALUES ($1)", mark)
    finally:
        await conn.close()
    return url


async def test_a_row_committed_on_the_primary_is_on_the_standby(
    postgres_replication: PostgresReplication,
) -> None:
    await database_marked(postgres_replication, "committed")
    # synchronous_commit = on: acknowledged means flushed on the standby (what a promotion
    # keeps), not yet replayed there (remote_apply would wait for that): reads there may lag.
    await postgres_replication.standby_replayed()
    standby = await asyncpg.connect(postgres_replication.standby.url("smoke"))
    try:
        assert await standby.fetchval("SELECT pg_is_in_recovery()")
        assert await standby.fetchval("SELECT mark FROM marks") == "committed"
    finally:
        await standby.close()


async def test_after_kill_and_promote_the_multi_host_url_writes_to_the_new_primary(
    postgres_replication: PostgresReplication,
) -> None:
    pair = postgres_replication
    url = await database_marked(pair, "before")

    killed_at = time.monotonic()
    await pair.kill_primary()
    await pair.promote_standby()
    promoted = time.monotonic() - killed_at
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO marks VALUES ('after')")
        written = time.monotonic() - killed_at
        assert await conn.fetchval("SHOW port") == str(pair.standby.port)
        marks = await conn.fetch("SELECT mark FROM marks ORDER BY mark DESC")
    finally:
        await conn.close()
    print(f"\nkill -9 + promote {promoted:.2f}s; first write {written:.2f}s after the kill")
    assert [row["mark"] for row in marks] == ["before", "after"]
