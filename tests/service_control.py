"""Stopping and reconfiguring the shared local services on purpose, and always putting them back.

Reached only through the `service_control` fixture, which refuses a test not marked
`disruptive`: such a test disturbs every other run on the same services, so a shared run
deselects it with `-m "not disruptive"`. Every action restores the service in a `finally`, so a
failing test cannot leave the rest of the suite (or CI, on the same machine) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.availability import require_tool, unavailable
from tests.clusters.commands import run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DISRUPTIVE = "disruptive"
SERVICE_TIMEOUT_SECONDS = 60
_NOT_LOCAL = "the services are not local, so they cannot be stopped"


async def _run(*command: str) -> str:
    return await run(*command, timeout_seconds=SERVICE_TIMEOUT_SECONDS)


async def _rabbitmqctl(*arguments: str) -> str:
    return await _run(require_tool("rabbitmqctl", _NOT_LOCAL), "-q", *arguments)


async def _wait_for_port(port: int) -> None:
    for _ in range(SERVICE_TIMEOUT_SECONDS * 10):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after restoring the service")


def _postgres_cluster() -> tuple[str, str]:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if Path("/etc/postgresql").is_dir()
        else []
    )
    require_tool("pg_ctlcluster", _NOT_LOCAL)
    if not versions:
        unavailable("no local Debian PostgreSQL cluster to stop and start")
    return versions[-1], "main"


class ServiceControl:
    """The server-wide actions a disruptive test may take."""

    @contextlib.asynccontextmanager
    async def broker_stopped(self) -> AsyncIterator[None]:
        """The RabbitMQ application stopped (the node stays up, as during a broker restart)."""
        await _rabbitmqctl("stop_app")
        try:
            yield
        finally:
            await _rabbitmqctl("start_app")
            await _rabbitmqctl("await_startup")
            await _wait_for_port(5672)

    @contextlib.asynccontextmanager
    async def postgres_killed(self, superuser_url: str) -> AsyncIterator[None]:
        """PostgreSQL stopped hard (`-m immediate`: no checkpoint, as a crash), then started.

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
    async def consumer_timeout(self, milliseconds: int) -> AsyncIterator[None]:
        """RabbitMQ's delivery-acknowledgement timeout lowered at runtime, restored afterwards.
        Applies to channels opened while it is in force, by every client of the broker."""
        get = "application:get_env(rabbit, consumer_timeout)."
        original = (await _rabbitmqctl("eval", get)).strip()
        await _rabbitmqctl(
            "eval", f"application:set_env(rabbit, consumer_timeout, {milliseconds})."
        )
        try:
            yield
        finally:
            if original.startswith("{ok,"):
                value = original.removeprefix("{ok,").removesuffix("}")
                await _rabbitmqctl(
                    "eval", f"application:set_env(rabbit, consumer_timeout, {value})."
                )
            else:
                await _rabbitmqctl("eval", "application:unset_env(rabbit, consumer_timeout).")


@pytest.fixture
def service_control(request: pytest.FixtureRequest) -> ServiceControl:
    """Refuses a test not marked `disruptive`, before it can touch anything."""
    if request.node.get_closest_marker(DISRUPTIVE) is None:
        pytest.fail(
            f"{request.node.nodeid} stops or reconfigures a shared service: mark it "
            f"@pytest.mark.{DISRUPTIVE} so that shared runs can deselect it",
            pytrace=False,
        )
    return ServiceControl()
