"""The real `payouts console` process: it answers its login page, and refuses to start, with a
reason a person can act on, when it could not serve safely."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
from argon2 import PasswordHasher

from tests.e2e.stack import free_port
from tests.polling import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests.services import Services

SESSION_KEY = "an-e2e-session-key-for-the-console-process-0123"
OPERATORS = """
[[console.operators]]
name = "olga"
role = "operator"
password_hash = "{password_hash}"
"""


def write_config(tmp_path: Path, database_url: str, port: int, operators: bool = True) -> Path:
    path = tmp_path / "payouts.toml"
    text = f'[database]\nurl = "{database_url}"\n[console]\nport = {port}\nsecure_cookies = false\n'
    if operators:
        cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        text += OPERATORS.format(password_hash=cheap.hash("pw"))
    path.write_text(text)
    return path


def console_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "payouts", "--config", str(config), "console"]


def environment() -> dict[str, str]:
    return {**os.environ, "PAYOUTS_CONSOLE_SESSION_SECRET": SESSION_KEY}


def start_console(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            console_command(config), env=environment(), stdout=log, stderr=subprocess.STDOUT
        )


async def test_the_console_process_serves_its_login_page(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, await services.new_database(), port)
    process = start_console(config, tmp_path / "console.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as browser:

            async def answers() -> bool:
                assert process.poll() is None, (tmp_path / "console.log").read_text()
                try:
                    return (await browser.get("/login")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(answers, "the console answers /login", limit_seconds=20)
            home = await browser.get("/")
        assert home.status_code == 303
        assert home.headers["location"] == "/login?next=%2F"
    finally:
        process.terminate()
        # uvicorn stops serving, then ends the process by the signal it stopped on.
        assert process.wait(timeout=15) == -signal.SIGTERM


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
