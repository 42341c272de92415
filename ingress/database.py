"""The ingress's own small Postgres pool, for the proof and order APIs only.

Callbacks never wait on it: the pool opens no connection at start-up and each use is bounded, so a
database outage turns these APIs into a clear "unavailable" answer and nothing else.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import asyncpg

from database.connection import create_pool, dropped_if_read_only
from schema.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from schema.settings import DatabaseSettings

__all__ = ["IngressDatabase"]

DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class IngressDatabase:
    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # min_size=0: creating the pool connects to nothing, so an outage cannot stop start-up.
        self._pool = await create_pool(
            self._settings.url,
            min_size=0,
            max_size=self._settings.api_pool_max_size,
            timeout=self._settings.connect_timeout_seconds,
            command_timeout=self._settings.api_statement_timeout_seconds,
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
            async with (
                self._pool.acquire(timeout=self._settings.api_acquire_timeout_seconds) as conn,
                dropped_if_read_only(conn),
            ):
                yield conn
        except DATABASE_ERRORS as error:
            raise DatabaseUnavailable(repr(error)) from error

    async def reachable(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1", timeout=self._settings.api_acquire_timeout_seconds)
        except DatabaseUnavailable:
            return False
        return True
