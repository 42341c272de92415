"""Stopping and cutting the shared local services on purpose, and always putting them back.

Every helper restores the service in a `finally`, so a failing test cannot leave the rest of the
suite (or CI, which runs on the same machine) without its Postgres or RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVICE_TIMEOUT_SECONDS = 60


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not on this machine: the services are not local")


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SERVICE_TIMEOUT_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.decode(errors='replace')}")
    return stdout.decode()


async def _wait_for_port(port: int) -> None:
    for _ in range(SERVICE_TIMEOUT_SECONDS * 10):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after restoring the service")


async def close_all_broker_connections() -> None:
    _require("rabbitmqctl")
    await _run("rabbitmqctl", "-q", "close_all_connections", "fault test: connections dropped")


@contextlib.asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """The RabbitMQ application stopped (the node stays up, as during a broker restart)."""
    _require("rabbitmqctl")
    await _run("rabbitmqctl", "-q", "stop_app")
    try:
        yield
    finally:
        await _run("rabbitmqctl", "-q", "start_app")
        await _run("rabbitmqctl", "-q", "await_startup")
        await _wait_for_port(5672)


def _postgres_cluster() -> tuple[str, str]:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if Path("/etc/postgresql").is_dir()
        else []
    )
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.skip("no local Debian PostgreSQL cluster to stop and start")
    return versions[-1], "main"


@contextlib.asynccontextmanager
async def postgres_killed(superuser_url: str) -> AsyncIterator[None]:
    """PostgreSQL stopped hard (`-m immediate`: no checkpoint, as a crash), then started again.

    A checkpoint first bounds the crash recovery to the WAL written since, so the outage lasts
    about as long on every machine instead of growing with whatever the run wrote before.
    """
    version, cluster = _postgres_cluster()
    ctl = ("pg_ctlcluster", "--skip-systemctl-redirect", version, cluster)
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    await _run(*ctl, "stop", "-m", "immediate")
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):  # already running is fine
            await _run(*ctl, "start")
        await _wait_for_port(5432)


@contextlib.asynccontextmanager
async def consumer_timeout(milliseconds: int) -> AsyncIterator[None]:
    """RabbitMQ's delivery-acknowledgement timeout lowered at runtime, restored afterwards.
    Applies to channels opened while it is in force."""
    _require("rabbitmqctl")
    original = (
        await _run("rabbitmqctl", "-q", "eval", "application:get_env(rabbit, consumer_timeout).")
    ).strip()
    await _run(
        "rabbitmqctl",
        "-q",
        "eval",
        f"application:set_env(rabbit, consumer_timeout, {milliseconds}).",
    )
    try:
        yield
    finally:
        if original.startswith("{ok,"):
            value = original.removeprefix("{ok,").removesuffix("}")
            await _run(
                "rabbitmqctl",
                "-q",
                "eval",
                f"application:set_env(rabbit, consumer_timeout, {value}).",
            )
        else:
            await _run(
                "rabbitmqctl", "-q", "eval", "application:unset_env(rabbit, consumer_timeout)."
            )
