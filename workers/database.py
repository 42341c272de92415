"""The worker's Postgres pool, opened once Postgres answers, and kept on the server that takes
writes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg

from database.connection import create_pool
from schema.errors import DatabaseUnavailable
from schema.logs import log, redacted_url

if TYPE_CHECKING:
    from schema.settings import DatabaseSettings

__all__ = ["Connection", "create_pool_when_available"]

# What the SQL functions accept: a plain connection or one borrowed from the pool.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

logger = logging.getLogger(__name__)
STARTUP_RETRY_SECONDS = 2.0


async def create_pool_when_available(settings: DatabaseSettings) -> asyncpg.Pool:
    """Retry until Postgres answers: a worker started during an outage waits instead of crashing."""
    while True:
        try:
            pool = await create_pool(
                settings.url,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                timeout=settings.connect_timeout_seconds,
                command_timeout=60,
                server_settings=settings.server_settings(),
            )
        except DatabaseUnavailable as error:  # down, hung, or only standbys: a failover
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
