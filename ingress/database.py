"""The ingress's own small Postgres pool, for the proof and order APIs only.

Callbacks never wait on it: the pool opens no connection at start-up and each use is bounded, so a
database outage turns these APIs into a clear "unavailable" answer and nothing else.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from schema.settings import DatabaseSettings

__all__ = ["DatabaseUnavailable", "IngressDatabase"]

POOL_MAX_SIZE = 5
ACQUIRE_TIMEOUT_SECONDS = 2.0
STATEMENT_TIMEOUT_SECONDS = 5.0
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DatabaseUnavailable(Exception):
    """Postgres did not answer in time; the caller answers "unavailable, retry"."""


class IngressDatabase:
    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # min_size=0: creating the pool connects to nothing, so an outage cannot stop start-up.
        self._pool = await asyncpg.create_pool(
            self._settings.url,
            min_size=0,
            max_size=POOL_MAX_SIZE,
            timeout=ACQUIRE_TIMEOUT_SECONDS,
            command_timeout=STATEMENT_TIMEOUT_SECONDS,
            server_settings=self._settings.server_settings(),
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A pooled connection; any failure to reach or use Postgres becomes DatabaseUnavailable."""
        if self._pool is None:
            raise DatabaseUnavailable("the database pool is not open")
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
                yield conn
        except DATABASE_ERRORS as error:
            raise DatabaseUnavailable(repr(error)) from error

    async def reachable(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1", timeout=ACQUIRE_TIMEOUT_SECONDS)
        except DatabaseUnavailable:
            return False
        return True
