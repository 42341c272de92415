"""Setting the services up for this configuration: the database and its forward-only migrations
from `schema/migrations`, and the broker topology. Idempotent, and safe to run concurrently."""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from broker.connection import connect_once
from broker.declaration import declare
from database.connection import connect
from payouts.actions.connections import DATABASE_UNREACHABLE, with_connection
from schema.errors import DatabaseUnavailable
from schema.logs import redacted_url
from schema.topology import Topology

if TYPE_CHECKING:
    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["apply_migrations", "create_database_if_missing", "migrate"]

# Any constant works; it only has to be the same for every process running `payouts migrate`.
MIGRATION_LOCK_KEY = 7_301_542_019
TOPOLOGY_CONNECT_SECONDS = 10.0

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(settings: Settings, create_database: bool) -> dict[str, Any]:
    """Create the database if asked and missing, apply the migrations it lacks, and declare the
    broker topology; say what was applied."""
    if create_database:
        try:
            await create_database_if_missing(
                settings.database.url, settings.database.connect_timeout_seconds
            )
        except DATABASE_UNREACHABLE as error:
            where = redacted_url(settings.database.url)
            raise DatabaseUnavailable(f"Postgres at {where}: {error}") from None
    applied = await with_connection(settings, apply_migrations)
    topology = Topology.from_settings(settings.broker)
    connection = await connect_once(settings.broker, "migrate", TOPOLOGY_CONNECT_SECONDS)
    async with connection:
        await declare(await connection.channel(), topology)
    return {"applied": applied, "topology": topology.exchange}


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


async def create_database_if_missing(url: str, connect_timeout_seconds: float) -> bool:
    """Create the database the URL names, connecting to `postgres` to do it; True if created."""
    try:
        conn = await connect(url, timeout=connect_timeout_seconds)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"will not create database {name!r}: use letters, digits and _ only")
    admin = await connect(
        urlunsplit(parts._replace(path="/postgres")), timeout=connect_timeout_seconds
    )
    try:
        # The name cannot be a bound parameter in CREATE DATABASE; it was checked above.
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False  # another migrator won the race
    finally:
        await admin.close()
    return True
