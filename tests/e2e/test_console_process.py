"""The real `payouts console` process: it answers its login page and its health check, signs in
the operators of its operators file, and refuses to start, with a reason a person can act on,
when it could not serve safely."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
from argon2 import PasswordHasher

from tests.console.consoles import log_in
from tests.e2e.stack import free_port
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.services import Services

SESSION_KEY = "an-e2e-session-key-for-the-console-process-0123"
OPERATORS = """
[[console.operators]]
name = "olga"
role = "operator"
password_hash = "{password_hash}"
"""


def operator_tables() -> str:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return OPERATORS.format(password_hash=cheap.hash("pw"))


def write_config(tmp_path: Path, database_url: str, port: int, operators: bool = True) -> Path:
    path = tmp_path / "payouts.toml"
    text = f'[database]\nurl = "{database_url}"\n[console]\nport = {port}\nsecure_cookies = false\n'
    path.write_text(text + (operator_tables() if operators else ""))
    return path


def console_command(config: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "payouts", "--config", str(config), "console", *options]


def environment() -> dict[str, str]:
    return {**os.environ, "PAYOUTS_CONSOLE_SESSION_SECRET": SESSION_KEY}


def start_console(config: Path, log_path: Path, *options: str) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            console_command(config, *options),
            env=environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def exit_log(log_path: Path) -> str:
    """What the console wrote before it exited: read once, when a test fails on it."""
    return log_path.read_text()


@contextlib.asynccontextmanager
async def running_console(
    config: Path, port: int, log_path: Path, *options: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console process once it answers /login; the process is stopped after."""
    process = start_console(config, log_path, *options)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as browser:

            async def answers() -> bool:
                assert process.poll() is None, exit_log(log_path)
                try:
                    return (await browser.get("/login")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(answers, "the console answers /login", limit_seconds=20)
            yield browser
    finally:
        process.terminate()
        # uvicorn stops serving, then ends the process by the signal it stopped on.
        assert process.wait(timeout=15) == -signal.SIGTERM


async def test_the_console_process_serves_its_login_page(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, await services.new_database(), port)
    async with running_console(config, port, tmp_path / "console.log") as browser:
        home = await browser.get("/")
        health = await browser.get("/healthz")
    assert home.status_code == 303
    assert home.headers["location"] == "/login?next=%2F"
    assert (health.status_code, health.text) == (200, "ok\n")


async def test_the_console_signs_in_an_operator_of_its_operators_file(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, await services.new_database(), port, operators=False)
    operators_file = tmp_path / "operators.toml"
    operators_file.write_text(operator_tables())
    options = ("--operators-file", str(operators_file))
    async with running_console(config, port, tmp_path / "console.log", *options) as browser:
        signed_in = await log_in(browser, "olga", "pw")
        home = await browser.get("/")
    assert signed_in.status_code == 303
    assert home.status_code == 200
    assert "olga" in home.text


def test_the_console_exits_non_zero_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, "postgresql://root@127.0.0.1:5432/unused", port)
        done = subprocess.run(
            console_command(config), env=environment(), capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 1
    assert "address already in use" in done.stderr.lower()


def test_the_console_does_not_start_without_an_operator(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://root@127.0.0.1:5432/unused", 0, operators=False)
    done = subprocess.run(
        console_command(config), env=environment(), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "console.operators: no operator is configured" in done.stderr


def test_hash_password_reads_standard_input_and_prints_an_argon2id_hash() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "payouts", "console", "hash-password"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    made = done.stdout.strip()
    assert made.startswith("$argon2id$")
    assert PasswordHasher().verify(made, "correct horse battery")
    assert "correct horse" not in done.stdout + done.stderr
