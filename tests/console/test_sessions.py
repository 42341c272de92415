"""Console sessions end on the server: each signed-in request checks the session's row in
Postgres, so a logout or `payouts console sign-out` refuses a copy of the cookie taken before,
an expired row is refused whatever its cookie says, and without the database no session is
honoured."""

from __future__ import annotations

import hashlib
import json
from base64 import b64decode, b64encode
from typing import TYPE_CHECKING, Any

import asyncpg
import itsdangerous

from payouts.actions.audit import command_line_actor
from payouts.actions.console_sessions import sign_out
from payouts.console.app import SESSION_COOKIE
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    SESSION_SECRET,
    VIEWER,
    VIEWER_PASSWORD,
    client,
    console_app,
    console_settings,
    signed_in_token,
)
from tests.e2e.stack import free_port
from tests.services import fetch_value

if TYPE_CHECKING:
    import httpx

    from payouts.console.headers import SecurityHeaders

_SIGNER = itsdangerous.TimestampSigner(SESSION_SECRET)


def session_of(cookie: str) -> dict[str, Any]:
    """What a session cookie holds, as Starlette's SessionMiddleware signs it."""
    held: dict[str, Any] = json.loads(b64decode(_SIGNER.unsign(cookie)))
    return held


def cookie_of(session: dict[str, Any]) -> str:
    """A session cookie holding `session`, signed with the console's key."""
    return _SIGNER.sign(b64encode(json.dumps(session).encode())).decode()


async def signed_in_cookie(app: SecurityHeaders, name: str, password: str) -> str:
    async with client(app) as browser:
        await signed_in_token(browser, name, password)
        cookie: str = browser.cookies[SESSION_COOKIE]
    return cookie


async def get_with(app: SecurityHeaders, cookie: str, path: str = "/") -> httpx.Response:
    """`path` asked with `cookie` by another browser: a copy of the cookie, as a thief sends it."""
    async with client(app) as thief:
        return await thief.get(path, headers={"cookie": f"{SESSION_COOKIE}={cookie}"})


def sent_to_the_login(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and answer.headers["location"].startswith("/login")


async def test_a_copy_of_the_cookie_taken_before_the_logout_is_refused_after_it(
    database_url: str,
) -> None:
    app = console_app(database_url)
    async with client(app) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        copied = browser.cookies[SESSION_COOKIE]
        assert (await get_with(app, copied)).status_code == 200, "the copy works until logout"
        assert (await browser.post("/logout", data={"csrf_token": token})).status_code == 303
    refused = await get_with(app, copied, "/audit")
    assert sent_to_the_login(refused)
    assert refused.headers["location"] == "/login?next=%2Faudit"
    # The refused cookie is cleared, so that the browser stops sending it.
    assert refused.headers["set-cookie"].startswith(f"{SESSION_COOKIE}=null;")


async def test_a_login_over_an_open_session_ends_that_session(database_url: str) -> None:
    app = console_app(database_url)
    async with client(app) as browser:
        token = await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        first = browser.cookies[SESSION_COOKIE]
        # Another person at the same browser signs in over the session left open.
        again = await browser.post(
            "/login", data={"csrf_token": token, "name": OPERATOR, "password": OPERATOR_PASSWORD}
        )
        assert again.status_code == 303
        assert (await browser.get("/")).status_code == 200
    assert sent_to_the_login(await get_with(app, first))
    open_rows = await fetch_value(
        database_url, "SELECT count(*) FROM console_sessions WHERE revoked_at IS NULL"
    )
    assert open_rows == 1


async def test_the_cookie_holds_a_token_whose_hash_alone_is_stored(database_url: str) -> None:
    app = console_app(database_url, session_max_age_seconds=3600)
    async with client(app, address="192.0.2.31") as browser:
        await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        held = session_of(browser.cookies[SESSION_COOKIE])
    assert set(held) == {"operator", "row", "csrf"}
    assert held["operator"] == VIEWER
    row = json.loads(
        await fetch_value(
            database_url,
            """SELECT json_build_object('operator', operator, 'address', client_address,
                   'seconds', extract(epoch FROM expires_at - created_at)::int,
                   'revoked', revoked_at IS NOT NULL, 'sha256', encode(token_sha256, 'hex'))::text
               FROM console_sessions""",
        )
    )
    assert row == {
        "operator": VIEWER,
        "address": "192.0.2.31",
        "seconds": 3600,
        "revoked": False,
        "sha256": hashlib.sha256(held["row"].encode()).hexdigest(),
    }


async def test_an_expired_row_is_refused_though_its_cookie_is_still_valid(
    database_url: str,
) -> None:
    app = console_app(database_url)
    cookie = await signed_in_cookie(app, OPERATOR, OPERATOR_PASSWORD)
    assert (await get_with(app, cookie)).status_code == 200
    await fetch_value(
        database_url,
        "UPDATE console_sessions SET created_at = now() - interval '9 hours',"
        " expires_at = now() - interval '1 second'",
    )
    assert sent_to_the_login(await get_with(app, cookie))


async def test_a_cookie_naming_another_operator_than_its_row_is_refused(
    database_url: str,
) -> None:
    """Even with the signing key, a viewer's session cannot be passed off as an operator's."""
    app = console_app(database_url)
    viewers = session_of(await signed_in_cookie(app, VIEWER, VIEWER_PASSWORD))
    assert (await get_with(app, cookie_of(viewers))).status_code == 200
    forged = cookie_of({**viewers, "operator": OPERATOR})
    assert sent_to_the_login(await get_with(app, forged))


async def test_a_cookie_without_a_row_signs_nobody_in(database_url: str) -> None:
    """A cookie as the console signed it before sessions had rows: its name alone is not a
    session."""
    app = console_app(database_url)
    assert sent_to_the_login(await get_with(app, cookie_of({"operator": OPERATOR, "csrf": "x"})))


async def test_a_session_is_not_honoured_while_the_database_is_away(database_url: str) -> None:
    cookie = await signed_in_cookie(console_app(database_url), OPERATOR, OPERATOR_PASSWORD)
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/payouts"
    for path in ("/", "/login"):
        answer = await get_with(console_app(unreachable), cookie, path)
        assert answer.status_code == 503, path
        assert "needs to check each session" in answer.text
        assert "Signed in as" not in answer.text


async def test_sign_out_revokes_every_open_session_of_the_operator(database_url: str) -> None:
    app = console_app(database_url)
    operators = [await signed_in_cookie(app, OPERATOR, OPERATOR_PASSWORD) for _ in range(2)]
    viewers = await signed_in_cookie(app, VIEWER, VIEWER_PASSWORD)
    settings = console_settings(database_url)
    actor = command_line_actor()
    assert await sign_out(settings, OPERATOR, actor) == 2
    for cookie in operators:
        assert sent_to_the_login(await get_with(app, cookie))
    assert (await get_with(app, viewers)).status_code == 200
    assert await sign_out(settings, OPERATOR, actor) == 0, "nothing left open"
    entries = json.loads(
        await fetch_value(
            database_url,
            """SELECT json_agg(json_build_object('actor', actor, 'kind', actor_kind,
                   'target', target, 'result', result, 'detail', detail) ORDER BY id)::text
               FROM audit_log WHERE action = 'console.sign-out'""",
        )
    )
    assert entries == [
        {"actor": actor.name, "kind": "cli", "target": OPERATOR, "result": "ok",
         "detail": {"revoked_sessions": revoked}}
        for revoked in (2, 0)
    ]  # fmt: skip


async def test_a_login_deletes_the_rows_a_day_past_their_expiry(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO console_sessions
                   (token_sha256, operator, client_address, created_at, expires_at, revoked_at)
               VALUES (sha256('stale'), 'olga', '192.0.2.1', now() - interval '34 hours',
                       now() - interval '26 hours', NULL),
                      (sha256('recent'), 'olga', '192.0.2.1', now() - interval '10 hours',
                       now() - interval '2 hours', now() - interval '3 hours')"""
        )
    finally:
        await conn.close()
    await signed_in_cookie(console_app(database_url), VIEWER, VIEWER_PASSWORD)
    kept = await fetch_value(
        database_url,
        "SELECT array_agg(operator ORDER BY created_at)::text FROM console_sessions",
    )
    assert kept == "{olga,vic}", "the stale row deleted, the recent one kept"
