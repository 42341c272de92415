"""Postgres connections: the pool, and the forward-only migrations from `schema/migrations`."""

from __future__ import annotations

import asyncio
import logging
import re
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from schema.logs import log, redacted_url

if TYPE_CHECKING:
    from schema.settings import DatabaseSettings

__all__ = [
    "Connection",
    "apply_migrations",
    "create_database_if_missing",
    "create_pool_when_available",
]

# What the SQL functions accept: a plain connection or one borrowed from the pool.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

logger = logging.getLogger(__name__)
STARTUP_RETRY_SECONDS = 2.0
# Any constant works; it only has to be the same for every process running `payouts migrate`.
MIGRATION_LOCK_KEY = 7_301_542_019

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def create_pool_when_available(settings: DatabaseSettings) -> asyncpg.Pool:
    """Retry until Postgres answers: a worker started during an outage waits instead of crashing."""
    while True:
        try:
            pool = await asyncpg.create_pool(
                settings.url,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                # A dead server must not hang a worker forever (asyncpg's own default is 60 s).
                timeout=settings.acquire_timeout_seconds,
                command_timeout=60,
                server_settings=settings.server_settings(),
            )
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
        ) as error:
            log(
                logger,
                logging.WARNING,
                "database unreachable, retrying",
                database=redacted_url(settings.url),
                error=repr(error),
                retry_in_seconds=STARTUP_RETRY_SECONDS,
            )
            await asyncio.sleep(STARTUP_RETRY_SECONDS)
            continue
        assert pool is not None
        return pool


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("schema.migrations")
    files = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in files]


async def apply_migrations(conn: Connection) -> list[str]:
    """Apply what is missing under a lock (concurrent migrators wait); return what was applied."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in _migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


async def create_database_if_missing(url: str) -> bool:
    """Create the database the URL names, connecting to `postgres` to do it; True if created."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"will not create database {name!r}: use letters, digits and _ only")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        # The name cannot be a bound parameter in CREATE DATABASE; it was checked above.
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False  # another migrator won the race
    finally:
        await admin.close()
    return True
