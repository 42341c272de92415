"""A console application on a test database, its operators with cheap hashes, and a browser-like
client that logs in: what the console tests build on."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any

import httpx
from argon2 import PasswordHasher

from payouts.console.app import create_app
from schema.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Message

    from payouts.console.headers import SecurityHeaders

SESSION_SECRET = "a-test-key-that-signs-console-sessions-0123456789"
OPERATOR, OPERATOR_PASSWORD = "olga", "olga's long password"
VIEWER, VIEWER_PASSWORD = "vic", "vic's long password"
# The lowest costs argon2 takes: the tests check the logic, not the hash's strength.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(database_url: str, **console: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "console": {
                "operators": [
                    {"name": OPERATOR, "password_hash": _CHEAP.hash(OPERATOR_PASSWORD),
                     "role": "operator"},
                    {"name": VIEWER, "password_hash": _CHEAP.hash(VIEWER_PASSWORD),
                     "role": "viewer"},
                ],
                **console,
            },
        }
    )  # fmt: skip


def console_app(database_url: str, **console: Any) -> SecurityHeaders:
    return create_app(console_settings(database_url, **console), SESSION_SECRET)


@contextlib.asynccontextmanager
async def lifespan_of(app: SecurityHeaders) -> AsyncIterator[None]:
    """`app` started and, on leaving, stopped as uvicorn does it, through the ASGI lifespan
    protocol (httpx's ASGITransport sends no lifespan events)."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    running = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await running


def client(app: SecurityHeaders, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client at `address` over https, so that it sends Secure cookies back as a browser
    would."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://console.test")


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, f"no CSRF token in the page:\n{page.text[:500]}"
    return found.group(1)


async def log_in(browser: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    """The login form filled in and sent, as a person does: the token from the page."""
    token = csrf_of(await browser.get("/login"))
    return await browser.post(
        "/login", data={"csrf_token": token, "name": name, "password": password}
    )


async def signed_in_token(browser: httpx.AsyncClient, name: str, password: str) -> str:
    """Log in, and the CSRF token of the signed-in session's forms."""
    answer = await log_in(browser, name, password)
    assert answer.status_code == 303, answer.text
    return csrf_of(await browser.get("/"))
