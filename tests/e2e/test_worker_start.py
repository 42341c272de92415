"""A worker started while Postgres or RabbitMQ is away waits for it: alive and not ready on its
status port meanwhile, and it still stops at once on SIGTERM, as compose, Kubernetes and the
supervisor expect (else they SIGKILL it)."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.stack import free_port

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

# Well inside the worker's own stop bound and the 45 s `Process.stop` waits before SIGKILL.
STOP_WITHIN_SECONDS = 10


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("away", ["database", "broker"])
async def test_a_worker_waiting_for_a_service_stops_on_sigterm(stack: Stack, away: str) -> None:
    unreachable = {
        "database": {"database_url": f"postgresql://payouts@127.0.0.1:{_closed_port()}/payouts"},
        "broker": {"broker_url": f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"},
    }[away]
    status_port = free_port()
    worker = stack._start(
        "worker", "worker", "--status-port", str(status_port), env=stack.env(**unreachable)
    )
    # Waiting, and saying so.
    for _ in range(100):
        if "unreachable, retrying" in worker.log():
            break
        await asyncio.sleep(0.1)
    assert "unreachable, retrying" in worker.log(), worker.log()
    assert worker.popen.poll() is None, worker.log()
    # Alive for a liveness or startup probe, which must not restart it for waiting; not ready.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{status_port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        readiness = await client.get("/readyz")
    assert readiness.status_code == 503
    assert readiness.json()["status"] == "not ready"

    code = worker.stop(timeout=STOP_WITHIN_SECONDS)
    assert code == 0, f"exit {code} (-9: killed after {STOP_WITHIN_SECONDS} s):\n{worker.log()}"
    assert "worker stopped before the" in worker.log()
