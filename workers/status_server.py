"""A worker process's own small HTTP port: GET /metrics, /healthz and /readyz.

Written on asyncio streams rather than a second web server in the worker's loop: three read-only
routes need no framework, and nothing here may install signal handlers or compete with the
consumer's shutdown. Each connection answers one request and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from schema.logs import log
from schema.metrics import CONTENT_TYPE_LATEST, exposition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Readiness", "StatusServer", "waiting_for_database"]

logger = logging.getLogger(__name__)

# (ready, what to report): the report names each dependency's state for a person reading it.
Readiness = tuple[bool, dict[str, str]]
REQUEST_TIMEOUT_SECONDS = 5.0
MAX_HEADER_BYTES = 8192


async def waiting_for_database() -> Readiness:
    """Before the worker exists: alive (the port answers /healthz), not ready."""
    return False, {"database": "waiting for it at start-up", "broker": "not consuming"}


class StatusServer:
    def __init__(self, host: str, port: int, readiness: Callable[[], Awaitable[Readiness]]) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    def answer_readiness_with(self, readiness: Callable[[], Awaitable[Readiness]]) -> None:
        """From now on, /readyz answers with `readiness`: the worker's, once it exists."""
        self._readiness = readiness

    @property
    def port(self) -> int | None:
        """The port bound (which differs from the configured one when that was 0), or None
        before `start`."""
        if self._server is None:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind, or raise OSError naming the address (a port taken by another worker, say)."""
        try:
            self._server = await asyncio.start_server(
                self._serve, self._host, self._port, limit=MAX_HEADER_BYTES
            )
        except OSError as error:
            raise OSError(
                error.errno,
                f"worker status port {self._host}:{self._port}: {error.strerror}; "
                "give each worker process on a host its own worker.status_port",
            ) from error
        log(logger, logging.INFO, "worker status port open", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, content_type, body = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a slow, vanished or oversized client gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers carry nothing these routes need
        if len(request_line) != 3:
            return _json(400, {"error": "bad request"})
        method, target, _ = request_line
        if method != "GET":
            return _json(405, {"error": "only GET"})
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, exposition()
        if path == "/healthz":
            return _json(200, {"status": "alive"})
        if path == "/readyz":
            ready, report = await self._readiness()
            return _json(
                200 if ready else 503, {"status": "ready" if ready else "not ready", **report}
            )
        return _json(404, {"error": "not found", "routes": ["/metrics", "/healthz", "/readyz"]})


def _json(status: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()
