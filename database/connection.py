"""Opening connections to the host that takes writes: the hosts of a multi-host URL are tried in
turn, each with its own timeout, where asyncpg's one timeout covers them all together and a
first host that hangs would use all of it (docs/high-availability.md, "A host that hangs")."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from schema.errors import DatabaseUnavailable
from schema.logs import log, redacted_url
from schema.settings import database_hosts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["connect", "create_pool", "dropped_if_read_only"]

logger = logging.getLogger(__name__)

# How one host fails when the next may still serve: it is down, hangs, closes the connection,
# is starting up or shutting down, or takes no writes (a standby). Anything else, a wrong
# password or a missing database, would be the same on every host and is raised at once, as
# asyncpg does.
_NEXT_HOST_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)

Host = tuple[str | None, int | None]
# Per URL, the host that last took a connection: tried first, so that once a standby has been
# promoted, new connections go straight to it rather than through a hung old primary each time.
_last_primary: dict[str, Host] = {}


# `timeout` keeps asyncpg's name for the connect timeout, by which a pool passes it on.
async def connect(url: str, *, timeout: float, **options: Any) -> asyncpg.Connection:  # noqa: ASYNC109
    """`asyncpg.connect(url, **options)` to the first host of `url` that takes a connection
    matching its `target_session_attrs`, each host given `timeout` seconds, the one that did last
    time first. Fits `asyncpg.create_pool(connect=...)`. DatabaseUnavailable names every host and
    why it was passed over; other errors (authentication, a missing database) pass through."""
    hosts: tuple[Host, ...] = database_hosts(url) or ((None, None),)  # asyncpg's default host
    last = _last_primary.get(url)
    failures = []
    for host, port in sorted(hosts, key=lambda candidate: candidate != last):
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                url, host=host, port=port, timeout=timeout, **options
            )
        except _NEXT_HOST_ERRORS as error:
            failures.append(f"{_shown(host, port)} {_why(error, timeout)}")
            continue
        if last != (host, port):
            _last_primary[url] = (host, port)
            log(logger, logging.INFO, "database host found", host=_shown(host, port))
        return conn
    raise DatabaseUnavailable(
        f"Postgres at {redacted_url(url)}: no host took the connection: {'; '.join(failures)}"
    )


async def create_pool(url: str, *, timeout: float, **options: Any) -> asyncpg.Pool:  # noqa: ASYNC109
    """`asyncpg.create_pool(url, **options)` whose every connection is opened by `connect`,
    with `timeout` seconds per host."""
    # Any: the stubs want each of asyncpg.connect's keywords spelled out, which `connect` takes
    # as **options and hands on unchanged.
    every_host: Any = connect
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, connect=every_host, timeout=timeout, **options
    )
    return pool


def _shown(host: str | None, port: int | None) -> str:
    if host is None:
        return "the default host"
    named = f"[{host}]" if ":" in host else host
    return f"{named}:{port}" if port else named


def _why(error: Exception, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"did not answer within {timeout} s (database.connect_timeout_seconds)"
    if isinstance(error, asyncpg.exceptions.TargetServerAttributeNotMatched):
        return "answered but takes no writes (a standby, or a server made read-only)"
    return f"failed: {type(error).__name__}: {error}"


@contextlib.asynccontextmanager
async def dropped_if_read_only(conn: asyncpg.pool.PoolConnectionProxy) -> AsyncIterator[None]:
    """Close a pooled connection whose server refused a write as read-only. The host list is
    consulted only when a connection opens: one kept open to a server that stopped taking
    writes (a primary fenced with default_transaction_read_only) would fail every retry, while
    a new one goes to the server that takes them."""
    try:
        yield
    except asyncpg.exceptions.ReadOnlySQLTransactionError:
        conn.terminate()
        raise
