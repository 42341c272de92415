"""The operator console's sessions, kept in Postgres so that one can be ended on the server: a
login opens one, each signed-in request checks it, a logout revokes it, and `payouts console
sign-out` revokes every open one of an operator. The cookie carries a random token; the table
keeps only its SHA-256, so a copy of the table signs nobody in."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from payouts.actions.audit import AuditResult, failures_recorded, record
from payouts.actions.connections import with_connection

if TYPE_CHECKING:
    from payouts.actions.audit import Actor, AuditEntry
    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["end_session", "open_session", "session_operator", "sign_out"]

SIGN_OUT = "console.sign-out"
# A row outlives its expiry by this long, revoked or not, so that a session ended a moment ago
# can still be looked at; then the next login deletes it.
KEPT_PAST_EXPIRY = timedelta(days=1)
TOKEN_BYTES = 32

INSERT_SESSION = """
INSERT INTO console_sessions (token_sha256, operator, client_address, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)
"""

DELETE_STALE_SESSIONS = "DELETE FROM console_sessions WHERE expires_at < now() - $1::interval"

# The primary key's lookup: the one query of each signed-in request.
SELECT_OPEN_SESSION = """
SELECT operator FROM console_sessions
WHERE token_sha256 = $1 AND revoked_at IS NULL AND expires_at > now()
"""

REVOKE_SESSION = """
UPDATE console_sessions SET revoked_at = now()
WHERE token_sha256 = $1 AND revoked_at IS NULL
"""

REVOKE_OPERATOR_SESSIONS = """
WITH revoked AS (
    UPDATE console_sessions SET revoked_at = now()
    WHERE operator = $1 AND revoked_at IS NULL AND expires_at > now()
    RETURNING 1
)
SELECT count(*) FROM revoked
"""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def open_session(settings: Settings, login: AuditEntry, replacing: str | None) -> str:
    """The token of a new session for `login.actor`, from `login.source`, open for
    console.session_max_age_seconds; `login` commits with it (no entry, no session), and the
    session of the browser's previous token, `replacing`, ends with it. The rows past
    KEPT_PAST_EXPIRY go on the way: each login pays for a few deletions at most."""
    token = secrets.token_urlsafe(TOKEN_BYTES)

    async def open_row(conn: Connection) -> None:
        async with conn.transaction():
            await record(conn, login)
            if replacing is not None:
                await conn.execute(REVOKE_SESSION, _digest(replacing))
            await conn.execute(DELETE_STALE_SESSIONS, KEPT_PAST_EXPIRY)
            await conn.execute(
                INSERT_SESSION,
                _digest(token),
                login.actor,
                login.source,
                timedelta(seconds=settings.console.session_max_age_seconds),
            )

    await with_connection(settings, open_row)
    return token


async def session_operator(settings: Settings, token: str) -> str | None:
    """The operator whose session `token` opened, while it is neither revoked nor expired;
    DatabaseUnavailable when Postgres does not answer, which the console answers with 503."""

    async def look_up(conn: Connection) -> str | None:
        operator: str | None = await conn.fetchval(SELECT_OPEN_SESSION, _digest(token))
        return operator

    return await with_connection(settings, look_up)


async def end_session(settings: Settings, token: str, logout: AuditEntry) -> None:
    """Revoke the session of `token`, `logout` committed with it: a copy of its cookie is
    refused from then on."""

    async def revoke(conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute(REVOKE_SESSION, _digest(token))
            await record(conn, logout)

    await with_connection(settings, revoke)


async def sign_out(settings: Settings, operator: str, actor: Actor) -> int:
    """Revoke every open session of `operator`, and say how many; `actor`'s audit entry commits
    with it (or, if it fails, is written as failed)."""

    async def revoke_all(conn: Connection) -> int:
        async with conn.transaction():
            revoked: int = await conn.fetchval(REVOKE_OPERATOR_SESSIONS, operator)
            entry = actor.entry(SIGN_OUT, AuditResult.OK, operator, {"revoked_sessions": revoked})
            await record(conn, entry)
        return revoked

    return await failures_recorded(
        settings, actor, SIGN_OUT, operator, with_connection(settings, revoke_all)
    )
