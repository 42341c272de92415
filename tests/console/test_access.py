"""Access to the console, through its real application on a real database: no page without a
login, refused logins audited and capped, CSRF tokens, cookies that expire, roles, headers."""

from __future__ import annotations

import asyncio
import html
from typing import Any
from urllib.parse import quote

import pytest
from starlette.routing import Route

from payouts.console.access import MAX_FORM_BYTES, MAX_FORM_FIELDS
from payouts.console.app import ROUTES, SESSION_COOKIE
from payouts.console.headers import SECURITY_HEADERS
from payouts.console.login_limits import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_NAME
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    client,
    console_app,
    csrf_of,
    log_in,
    signed_in_token,
)
from tests.e2e.stack import free_port
from tests.services import fetch_value

AUDIT_ROWS = """
SELECT coalesce(json_agg(json_build_object(
    'actor', actor, 'actor_kind', actor_kind, 'action', action, 'target', target,
    'source', source, 'result', result, 'detail', detail) ORDER BY id), '[]')::text
FROM audit_log
"""


async def audit_rows(database_url: str) -> list[dict[str, Any]]:
    import json

    rows: list[dict[str, Any]] = json.loads(await fetch_value(database_url, AUDIT_ROWS))
    return rows


# The login, and the probe of a supervisor (Kubernetes), which answers "ok" and nothing else.
PUBLIC_PATHS = frozenset({"/login", "/healthz"})


def routes_behind_the_login() -> list[tuple[str, str]]:
    """Each route but the public ones, a path parameter given the value 1 (which every one
    reads)."""
    return [
        (method, route.path_format.format(**dict.fromkeys(route.param_convertors, "1")))
        for route in ROUTES
        if isinstance(route, Route) and route.path not in PUBLIC_PATHS
        for method in sorted(route.methods or ()) if method != "HEAD"
    ]  # fmt: skip


async def test_every_route_but_the_login_sends_a_stranger_to_the_login_page(
    database_url: str,
) -> None:
    routes = routes_behind_the_login()
    assert {("GET", "/"), ("GET", "/audit"), ("POST", "/logout"), ("POST", "/accounts")} <= set(
        routes
    )
    async with client(console_app(database_url)) as browser:
        for method, path in routes:
            answer = await browser.request(method, path, params={"actor": "x"})
            assert answer.status_code == 303, (method, path)
            asked = quote(f"{path}?actor=x", safe="")
            wanted = f"/login?next={asked}" if method == "GET" else "/login"
            assert answer.headers["location"] == wanted, (method, path)


async def test_the_health_probe_answers_a_stranger_with_nothing_of_the_records(
    database_url: str,
) -> None:
    async with client(console_app(database_url)) as browser:
        answer = await browser.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    assert "set-cookie" not in answer.headers
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, name


async def test_a_login_brings_the_operator_to_the_page_they_wanted(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        token = csrf_of(await browser.get("/login?next=%2Faudit%3Factor%3Dolga"))
        answer = await browser.post(
            "/login",
            data={"csrf_token": token, "name": OPERATOR, "password": OPERATOR_PASSWORD,
                  "next": "/audit?actor=olga"},
        )  # fmt: skip
        assert answer.status_code == 303
        assert answer.headers["location"] == "/audit?actor=olga"
        home = await browser.get("/")
    assert home.status_code == 200
    assert "Signed in as olga" in home.text
    assert "<strong>operator</strong>" in home.text
    assert (await audit_rows(database_url)) == [
        {"actor": "olga", "actor_kind": "console", "action": "login", "target": None,
         "source": "127.0.0.1", "result": "ok", "detail": {"role": "operator"}},
    ]  # fmt: skip


@pytest.mark.parametrize("wanted", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_a_login_never_sends_the_operator_to_another_site(
    database_url: str, wanted: str
) -> None:
    async with client(console_app(database_url)) as browser:
        token = csrf_of(await browser.get("/login"))
        answer = await browser.post(
            "/login",
            data={"csrf_token": token, "name": OPERATOR, "password": OPERATOR_PASSWORD,
                  "next": wanted},
        )  # fmt: skip
    assert answer.headers["location"] == "/"


async def test_a_wrong_password_is_refused_and_audited(database_url: str) -> None:
    async with client(console_app(database_url), address="198.51.100.7") as browser:
        answer = await log_in(browser, OPERATOR, "not the password")
        assert answer.status_code == 401
        assert "Wrong name or password." in answer.text
        assert (await browser.get("/")).status_code == 303
    assert (await audit_rows(database_url)) == [
        {"actor": "olga", "actor_kind": "console", "action": "login", "target": None,
         "source": "198.51.100.7", "result": "refused",
         "detail": {"reason": "wrong name or password"}},
    ]  # fmt: skip


async def test_an_unknown_name_is_refused_like_a_wrong_password(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        answer = await log_in(browser, "mallory", OPERATOR_PASSWORD)
    assert answer.status_code == 401
    assert "Wrong name or password." in answer.text
    (entry,) = await audit_rows(database_url)
    assert (entry["actor"], entry["result"]) == ("mallory", "refused")


async def test_failed_logins_from_one_address_are_capped(database_url: str) -> None:
    app = console_app(database_url)
    async with client(app, address="203.0.113.5") as browser:
        for attempt in range(MAX_FAILURES_PER_ADDRESS):
            assert (await log_in(browser, f"guess-{attempt}", "x")).status_code == 401
        # Even the right password waits now: the cap is checked before any password.
        limited = await log_in(browser, OPERATOR, OPERATOR_PASSWORD)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 300
        assert "Too many failed logins" in limited.text
    async with client(app, address="203.0.113.6") as elsewhere:
        assert (await log_in(elsewhere, OPERATOR, OPERATOR_PASSWORD)).status_code == 303
    last = (await audit_rows(database_url))[MAX_FAILURES_PER_ADDRESS]
    assert (last["actor"], last["result"], last["detail"]) == (
        "olga", "refused", {"reason": "too many failed logins"},
    )  # fmt: skip


async def test_guesses_sent_together_do_not_pass_the_cap_together(database_url: str) -> None:
    async with client(console_app(database_url), address="203.0.113.9") as browser:
        token = csrf_of(await browser.get("/login"))
        answers = await asyncio.gather(
            *(
                browser.post(
                    "/login", data={"csrf_token": token, "name": VIEWER, "password": f"g{n}"}
                )
                for n in range(3 * MAX_FAILURES_PER_NAME)
            )
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * MAX_FAILURES_PER_NAME + [429] * (2 * MAX_FAILURES_PER_NAME)


async def test_a_success_does_not_count_against_its_address(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        for _ in range(MAX_FAILURES_PER_ADDRESS + 1):
            token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
            await browser.post("/logout", data={"csrf_token": token})


async def test_failed_logins_for_one_name_are_capped_across_addresses(database_url: str) -> None:
    app = console_app(database_url)
    for attempt in range(MAX_FAILURES_PER_NAME):
        async with client(app, address=f"192.0.2.{attempt + 1}") as browser:
            assert (await log_in(browser, VIEWER, "guess")).status_code == 401
    async with client(app, address="192.0.2.99") as browser:
        assert (await log_in(browser, VIEWER, VIEWER_PASSWORD)).status_code == 429
        assert (await log_in(browser, OPERATOR, OPERATOR_PASSWORD)).status_code == 303


async def test_operators_behind_one_address_are_not_locked_out_by_a_few_typos(
    database_url: str,
) -> None:
    """Behind a port-forward every operator has one address: a name's cap is reached long
    before the address's, and the others still log in."""
    app = console_app(database_url)
    async with client(app, address="127.0.0.1") as browser:
        for _ in range(MAX_FAILURES_PER_NAME):
            assert (await log_in(browser, VIEWER, "typo")).status_code == 401
        assert (await log_in(browser, VIEWER, VIEWER_PASSWORD)).status_code == 429
        assert (await log_in(browser, OPERATOR, OPERATOR_PASSWORD)).status_code == 303


async def test_a_form_without_the_sessions_csrf_token_is_refused_and_audited(
    database_url: str,
) -> None:
    async with client(console_app(database_url), address="192.0.2.50") as browser:
        refused = await browser.post(
            "/login", data={"name": OPERATOR, "password": OPERATOR_PASSWORD}
        )
        assert refused.status_code == 403
        assert "did not come from this console" in refused.text
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        forged = await browser.post("/logout", data={"csrf_token": token[::-1]})
        assert forged.status_code == 403
        assert (await browser.get("/")).status_code == 200, "still signed in"
    rows = await audit_rows(database_url)
    assert [(r["actor"], r["action"], r["target"], r["result"]) for r in rows] == [
        ("-", "csrf", "/login", "refused"),
        ("olga", "login", None, "ok"),
        ("olga", "csrf", "/logout", "refused"),
    ]
    assert rows[0]["detail"] == {"reason": "missing or wrong CSRF token"}


async def test_a_form_larger_than_any_of_the_consoles_is_refused(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        token = csrf_of(await browser.get("/login"))
        answer = await browser.post(
            "/login", data={"csrf_token": token, "name": "x" * MAX_FORM_BYTES, "password": "p"}
        )
    assert answer.status_code == 413
    (entry,) = await audit_rows(database_url)
    assert (entry["action"], entry["result"]) == ("form", "refused")


async def test_a_form_of_more_fields_than_any_of_the_consoles_is_refused(
    database_url: str,
) -> None:
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        many = {f"field{number}": "x" for number in range(MAX_FORM_FIELDS)}
        answer = await browser.post("/accounts", data={"csrf_token": token, **many})
    assert answer.status_code == 413
    assert f"over {MAX_FORM_FIELDS} fields" in answer.text
    entry = (await audit_rows(database_url))[-1]
    assert (entry["action"], entry["result"]) == ("form", "refused")
    assert await fetch_value(database_url, "SELECT count(*) FROM accounts") == 0


async def test_each_login_gets_a_new_csrf_token(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        before = csrf_of(await browser.get("/login"))
        after = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
    assert before != after


async def test_logout_ends_the_session_and_is_audited(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        answer = await browser.post("/logout", data={"csrf_token": token})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"
        assert (await browser.get("/")).status_code == 303
    assert [(r["actor"], r["action"]) for r in await audit_rows(database_url)] == [
        ("vic", "login"),
        ("vic", "logout"),
    ]


async def test_a_session_expires_its_max_age_after_the_login(database_url: str) -> None:
    async with client(console_app(database_url, session_max_age_seconds=1)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        assert (await browser.get("/")).status_code == 200
        # itsdangerous counts whole seconds: past 1 s of age, whatever the rounding.
        await asyncio.sleep(2.2)
        expired = await browser.get("/audit")
    assert expired.status_code == 303
    assert expired.headers["location"].startswith("/login")


def session_cookie(answer: Any) -> str:
    (cookie,) = [
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith(f"{SESSION_COOKIE}=")
    ]
    return str(cookie).lower()


async def test_the_session_cookie_is_httponly_strict_and_secure(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        answer = await log_in(browser, OPERATOR, OPERATOR_PASSWORD)
    flags = {part.strip() for part in session_cookie(answer).split(";")}
    assert {"httponly", "samesite=strict", "secure", "max-age=28800"} <= flags


async def test_the_session_cookie_is_not_secure_when_configured_for_local_http(
    database_url: str,
) -> None:
    async with client(console_app(database_url, secure_cookies=False)) as browser:
        answer = await log_in(browser, OPERATOR, OPERATOR_PASSWORD)
    flags = {part.strip() for part in session_cookie(answer).split(";")}
    assert {"httponly", "samesite=strict"} <= flags
    assert "secure" not in flags


async def test_every_answer_carries_the_security_headers(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        answers = [
            await browser.get("/login"),
            await browser.get("/"),  # a redirect
            await browser.get("/static/console.css"),
            await browser.get("/no-such-page"),
            await browser.post("/login", data={}),  # refused: no CSRF token
            await log_in(browser, OPERATOR, "wrong"),
        ]
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answers += [await browser.get("/audit"), await browser.get("/audit?since=yesterday")]
        answers.append(await browser.post("/logout", data={"csrf_token": token}))
    assert [a.status_code for a in answers] == [200, 303, 200, 404, 403, 401, 200, 400, 303]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name)


async def test_pages_have_no_inline_script_or_style(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        pages = [await browser.get("/login")]
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        pages += [await browser.get(path) for path in ("/", "/audit", "/accounts")]
    for page in pages:
        assert "<script" not in page.text
        assert "<style" not in page.text
        assert "style=" not in page.text


async def test_a_viewer_may_not_create_an_account_and_the_refusal_is_audited(
    database_url: str,
) -> None:
    async with client(console_app(database_url), address="192.0.2.77") as browser:
        token = await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        page = await browser.get("/accounts")
        assert page.status_code == 200
        assert 'action="/accounts"' not in page.text
        refused = await browser.post(
            "/accounts", data={"csrf_token": token, "user": "player-1", "currency": "COIN"}
        )
    assert refused.status_code == 403
    assert "needs the operator role" in refused.text
    wallets = await fetch_value(database_url, "SELECT count(*) FROM accounts WHERE kind = 'wallet'")
    assert wallets == 0
    refusal = (await audit_rows(database_url))[-1]
    assert refusal == {
        "actor": "vic", "actor_kind": "console", "action": "account.create",
        "target": "/accounts", "source": "192.0.2.77", "result": "refused",
        "detail": {"reason": "role viewer is not operator",
                   "form": {"user": "player-1", "currency": "COIN"}},
    }  # fmt: skip


async def test_an_operator_creates_an_account_and_it_is_audited(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        created = await browser.post(
            "/accounts", data={"csrf_token": token, "user": "player-1", "currency": "COIN"}
        )
        again = await browser.post(
            "/accounts", data={"csrf_token": token, "user": "player-1", "currency": "COIN"}
        )
    assert created.status_code == 200
    assert "wallet created" in created.text
    assert "the wallet existed already" in again.text
    entry = (await audit_rows(database_url))[1]
    assert (entry["actor"], entry["action"], entry["target"], entry["result"]) == (
        "olga", "account.create", "player-1 COIN", "ok",
    )  # fmt: skip
    assert entry["detail"] == {"created": True, "credited_held_payouts": 0}


@pytest.mark.parametrize(
    ("path", "user", "currency", "said"),
    [
        ("/accounts", "a\x01b", "COIN", "user_id 'a\\x01b': give 1 to 128 printable characters"),
        ("/accounts", "player-1", "C" * 65, "currency"),
        ("/held", "", "COIN", "user_id '': give 1 to 128"),
    ],
)
async def test_an_account_no_callback_could_credit_is_refused_and_audited_as_failed(
    database_url: str, path: str, user: str, currency: str, said: str
) -> None:
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        refused = await browser.post(
            path, data={"csrf_token": token, "user": user, "currency": currency}
        )
    assert refused.status_code == 400
    assert said in html.unescape(refused.text)
    assert await fetch_value(database_url, "SELECT count(*) FROM accounts") == 0
    entry = (await audit_rows(database_url))[-1]
    assert (entry["action"], entry["result"]) == ("account.create", "failed")
    assert entry["detail"]["error"].startswith("AccountRefused")


async def test_no_login_without_its_audit_entry_while_the_database_is_away() -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/payouts"
    async with client(console_app(unreachable)) as browser:
        answer = await log_in(browser, OPERATOR, OPERATOR_PASSWORD)
        assert answer.status_code == 503
        assert "cannot reach its database" in answer.text
        assert (await browser.get("/")).status_code == 303, "not signed in"
