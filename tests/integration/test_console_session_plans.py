"""The console sessions' queries read their indexes (migration 0006): the check every signed-in
request makes, the sign-out of an operator, and the deletion of old rows at each login."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from payouts.actions.console_sessions import (
    DELETE_STALE_SESSIONS,
    KEPT_PAST_EXPIRY,
    REVOKE_OPERATOR_SESSIONS,
    SELECT_OPEN_SESSION,
)
from tests.query_plans import indexes_read

if TYPE_CHECKING:
    import asyncpg

# 20,000 sessions of 200 operators, one a minute, nine in ten revoked; none a day past its
# expiry, as after the deletion that every login runs.
FILL = """
INSERT INTO console_sessions
    (token_sha256, operator, client_address, created_at, expires_at, revoked_at)
SELECT sha256(convert_to(n::text, 'UTF8')), 'op-' || (n % 200), '192.0.2.1',
       ends - interval '8 hours', ends,
       CASE WHEN n % 10 <> 0 THEN ends - interval '7 hours' END
FROM generate_series(1, 20000) AS n,
     LATERAL (SELECT now() - interval '23 hours' + n * interval '1 minute' AS ends) AS times
"""


@pytest.mark.parametrize(
    ("query", "arguments", "index"),
    [
        (SELECT_OPEN_SESSION, (b"\x00" * 32,), "console_sessions_pkey"),
        (REVOKE_OPERATOR_SESSIONS, ("op-7",), "console_sessions_open_by_operator"),
        (DELETE_STALE_SESSIONS, (KEPT_PAST_EXPIRY,), "console_sessions_by_expires_at"),
    ],
    ids=["check", "sign-out", "deletion"],
)
async def test_a_session_query_reads_its_index(
    pool: asyncpg.Pool, query: str, arguments: tuple[Any, ...], index: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(FILL)
        await conn.execute("ANALYZE console_sessions")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *arguments)
    assert index in indexes_read(json.loads(plan)[0]["Plan"]), plan
    assert "Seq Scan" not in plan, plan
