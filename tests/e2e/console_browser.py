"""Headless Chromium (Debian's `chromium` package, driven by Playwright: Playwright's own browser
download is not reachable here) in front of a real `payouts console` process, beside the real
ingress and worker of an end-to-end stack: what the browser tests build on."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from argon2 import PasswordHasher
from playwright.async_api import async_playwright

from tests.availability import require_tool
from tests.e2e.stack import Process, Stack, free_port
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from playwright.async_api import Browser, Page

SESSION_KEY = "a-browser-test-key-that-signs-console-sessions-0123"
OPERATOR, OPERATOR_PASSWORD = "olga", "olga's long password"
VIEWER, VIEWER_PASSWORD = "vic", "vic's long password"
# The lowest costs argon2 takes: the tests check the console, not the hash's strength.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CONSOLE_SECTION = """
[console]
port = {port}
secure_cookies = false  # plain http on loopback
{prometheus}
[[console.operators]]
name = "{operator}"
role = "operator"
password_hash = "{operator_hash}"

[[console.operators]]
name = "{viewer}"
role = "viewer"
password_hash = "{viewer_hash}"
"""


def chromium_path() -> str:
    """Debian's chromium: deploy/local/test.sh installs it (ensure_chromium)."""
    return require_tool("chromium", "deploy/local/test.sh installs it (ensure_chromium)")


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    # Chromium's sandbox needs user namespaces that root in a container may not have.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=args
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """The console process of `stack`, on its own port, with an operator and a viewer."""

    stack: Stack
    process: Process
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _spawn(config: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "payouts", "--config", str(config), "console"],
            env={**env, "PAYOUTS_CONSOLE_SESSION_SECRET": SESSION_KEY},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def start_console(stack: Stack, prometheus_url: str | None = None) -> Console:
    """`payouts console` with the stack's configuration and a [console] section of its own."""
    port = free_port()
    config = stack.tmp_path / "console.toml"
    section = CONSOLE_SECTION.format(
        port=port,
        prometheus=f'prometheus_url = "{prometheus_url}"\n' if prometheus_url else "",
        operator=OPERATOR,
        operator_hash=_CHEAP.hash(OPERATOR_PASSWORD),
        viewer=VIEWER,
        viewer_hash=_CHEAP.hash(VIEWER_PASSWORD),
    )
    config.write_text(stack.config_path.read_text() + section)
    log_path = stack.tmp_path / "console.log"
    popen = _spawn(config, stack.env(), log_path)
    process = Process("console", popen, log_path)
    stack.processes.append(process)
    console = Console(stack, process, port)
    async with httpx.AsyncClient(base_url=console.base_url) as client:

        async def answers() -> bool:
            assert popen.poll() is None, process.log()
            try:
                return (await client.get("/login")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(answers, "the console answers /login", limit_seconds=20)
    return console


async def log_in(page: Page, name: str, password: str) -> None:
    """The login form filled in and sent, as a person does."""
    await page.goto("/login")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/")
