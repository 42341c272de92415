"""What every `payouts` subcommand shares: the checked settings, output as text or JSON, a
database connection, and errors that say which service is unreachable and how to start it."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    import asyncpg

    from schema.settings import Settings

__all__ = [
    "POSTGRES_HINT",
    "RABBITMQ_HINT",
    "ServiceUnreachable",
    "add_command",
    "load_checked_settings",
    "print_data",
    "with_connection",
]

POSTGRES_HINT = (
    "start it (Debian: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start; "
    "Docker: docker compose -f deploy/compose.yaml up -d postgres) or set PAYOUTS_DATABASE_URL"
)
RABBITMQ_HINT = (
    "start it (Debian: rabbitmq-server -detached; "
    "Docker: docker compose -f deploy/compose.yaml up -d rabbitmq) or set PAYOUTS_BROKER_URL"
)


class ServiceUnreachable(Exception):
    """Postgres or RabbitMQ did not answer; the message says which, where, and what to start."""


def load_checked_settings(args: argparse.Namespace) -> Settings:
    """The validated file, provider protocols included, whichever part is about to run."""
    from ingress.protocols import validate_providers
    from schema.settings import ConfigError, load_settings

    settings = load_settings(Path(args.config))
    try:
        validate_providers(settings.providers)
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}") from None
    return settings


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def print_data(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, default=_json_default, indent=2))
        return
    _print_text(data, indent=0)


def _print_text(data: Any, indent: int) -> None:
    pad = "  " * indent
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                print(f"{pad}{key}:")
                _print_text(value, indent + 1)
            else:
                print(f"{pad}{key}: {_json_default(value) if _is_special(value) else value}")
    elif isinstance(data, list):
        for item in data:
            print(f"{pad}-")
            _print_text(item, indent + 1)
    else:
        print(f"{pad}{data}")


def _is_special(value: object) -> bool:
    return isinstance(value, Decimal | datetime | UUID)


async def with_connection(
    settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> Any:
    import asyncpg

    from schema.logs import redacted_url

    try:
        conn = await asyncpg.connect(
            settings.database.url,
            timeout=settings.database.acquire_timeout_seconds,
            server_settings=settings.database.server_settings(),
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        where = redacted_url(settings.database.url)
        raise ServiceUnreachable(f"Postgres at {where}: {error}; {POSTGRES_HINT}") from None
    try:
        return await action(conn)
    finally:
        await conn.close()


def add_command(
    parent: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    """A subcommand with its handler and the `--json` switch every command has."""
    sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    return sub
