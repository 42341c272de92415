"""How an action reaches its services: the checked settings, one Postgres connection for its
length, and what to start when a service does not answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import asyncpg

from database.connection import connect
from schema.errors import BrokerUnavailable, ConfigError, DatabaseUnavailable, ServiceUnavailable
from schema.logs import redacted_url
from schema.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from schema.settings import Settings

__all__ = ["DATABASE_UNREACHABLE", "load_checked_settings", "start_hint", "with_connection"]

# What connecting to Postgres raises, besides the DatabaseUnavailable naming each host, when it
# cannot serve us: a wrong password, a missing database.
DATABASE_UNREACHABLE = (asyncpg.PostgresError,)

T = TypeVar("T")

POSTGRES_HINT = (
    "start it (Debian: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start; "
    "Docker: docker compose -f deploy/compose.yaml up -d postgres) or set PAYOUTS_DATABASE_URL"
)
RABBITMQ_HINT = (
    "start it (Debian: rabbitmq-server -detached; "
    "Docker: docker compose -f deploy/compose.yaml up -d rabbitmq) or set PAYOUTS_BROKER_URL"
)


def start_hint(error: ServiceUnavailable) -> str:
    """What an operator can do about `error`."""
    if isinstance(error, DatabaseUnavailable):
        return POSTGRES_HINT
    if isinstance(error, BrokerUnavailable):
        return RABBITMQ_HINT
    return "check that the service runs and is reachable"


def load_checked_settings(path: Path) -> Settings:
    """The validated file, provider protocols included, whichever part is about to run."""
    from ingress.protocols import validate_providers

    settings = load_settings(path)
    try:
        validate_providers(settings.providers)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return settings


async def with_connection(
    settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """`action` on a connection of its own, closed after it; DatabaseUnavailable if Postgres
    does not answer."""
    try:
        conn = await connect(
            settings.database.url,
            timeout=settings.database.connect_timeout_seconds,
            server_settings=settings.database.server_settings(),
        )
    except DATABASE_UNREACHABLE as error:
        where = redacted_url(settings.database.url)
        raise DatabaseUnavailable(f"Postgres at {where}: {error}") from None
    try:
        return await action(conn)
    finally:
        await conn.close()
