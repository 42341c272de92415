"""The audit trail: who did what, from where, and how it ended, for every front end (the web
console now, the `payouts` commands next), and the filtered, newest-first pages of it."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from payouts.actions.connections import with_connection
from schema.errors import ServiceUnavailable
from schema.logs import log
from schema.plain_values import plain_value

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from datetime import datetime

    from schema.settings import Settings
    from workers.database import Connection

__all__ = [
    "ANONYMOUS",
    "Actor",
    "ActorKind",
    "AuditEntry",
    "AuditFilter",
    "AuditResult",
    "AuditRow",
    "audit_page",
    "command_line_actor",
    "failures_recorded",
    "record",
    "record_audit",
    "record_audit_or_log",
]

logger = logging.getLogger("payouts.audit")
T = TypeVar("T")

# The actor of a request made without a session; operator names start with a letter or digit.
ANONYMOUS = "-"

INSERT_ENTRY = """
INSERT INTO audit_log (actor, actor_kind, action, target, source, result, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
"""

# Each filter is left out when its parameter is NULL; the keyset ($6) pages newest first.
SELECT_PAGE = """
SELECT id, at, actor, actor_kind, action, target, source, result, detail::text AS detail
FROM audit_log
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR result = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::timestamptz IS NULL OR at < $5)
  AND ($6::bigint IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $7
"""


class ActorKind(StrEnum):
    CONSOLE = "console"
    CLI = "cli"


class AuditResult(StrEnum):
    OK = "ok"
    # Not allowed: wrong password, rate limit, missing CSRF token, role.
    REFUSED = "refused"
    # Allowed, but it did not complete.
    FAILED = "failed"


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    actor_kind: ActorKind
    action: str
    source: str
    result: AuditResult
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Actor:
    """Who acts, through which front end, from where: what every entry of theirs says."""

    name: str
    kind: ActorKind
    source: str

    def entry(
        self,
        action: str,
        result: AuditResult,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        return AuditEntry(self.name, self.kind, action, self.source, result, target, detail or {})


def command_line_actor() -> Actor:
    """The person running a `payouts` command: their OS user, on this host."""
    try:
        user = getpass.getuser()
    except OSError:  # no user name for this uid (a container's arbitrary one)
        user = "unknown"
    return Actor(user, ActorKind.CLI, f"{socket.gethostname()}")


@dataclass(frozen=True)
class AuditFilter:
    """Which entries a page shows; None lets every value through."""

    actor: str | None = None
    action: str | None = None
    result: AuditResult | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    target: str | None
    source: str
    result: str
    detail: dict[str, Any]


async def record(conn: Connection, entry: AuditEntry) -> None:
    await conn.execute(
        INSERT_ENTRY,
        entry.actor,
        entry.actor_kind.value,
        entry.action,
        entry.target,
        entry.source,
        entry.result.value,
        json.dumps(entry.detail, default=plain_value),
    )


async def record_audit(settings: Settings, entry: AuditEntry) -> None:
    """Write `entry` on a connection of its own (DatabaseUnavailable if Postgres does not
    answer: a front end refuses the action rather than let it go unrecorded)."""

    async def write(conn: Connection) -> None:
        await record(conn, entry)

    await with_connection(settings, write)


async def record_audit_or_log(settings: Settings, entry: AuditEntry) -> None:
    """Write `entry` on a connection of its own, or log it when Postgres does not answer: for
    what has happened (or failed) already, which an unwritten entry cannot undo."""
    try:
        await record_audit(settings, entry)
    except ServiceUnavailable as unavailable:
        log(
            logger,
            logging.ERROR,
            "audit entry not written",
            entry=vars(entry),
            error=str(unavailable),
        )


async def failures_recorded(
    settings: Settings,
    actor: Actor,
    action: str,
    target: str | None,
    work: Awaitable[T],
    detail: dict[str, Any] | None = None,
) -> T:
    """`work`'s result; when it raises, `action` is recorded as failed on a connection of its
    own (the action's transaction rolled back, and the entry it would have committed with it),
    with the error and `detail`."""
    try:
        return await work
    except (Exception, SystemExit) as error:
        failed = {**(detail or {}), "error": f"{type(error).__name__}: {error}"}
        await record_audit_or_log(settings, actor.entry(action, AuditResult.FAILED, target, failed))
        raise


async def audit_page(
    settings: Settings, filters: AuditFilter, before_id: int | None, limit: int
) -> list[AuditRow]:
    """Up to `limit` entries matching `filters`, newest first, older than `before_id` if given."""

    async def read(conn: Connection) -> list[AuditRow]:
        rows = await conn.fetch(
            SELECT_PAGE,
            filters.actor,
            filters.action,
            filters.result.value if filters.result else None,
            filters.since,
            filters.until,
            before_id,
            limit,
        )
        return [AuditRow(**{**row, "detail": json.loads(row["detail"])}) for row in rows]

    return await with_connection(settings, read)
