"""A round-robin TCP load balancer a test owns, to restart processes behind it one by one as an
operator's load balancer lets them: out of rotation, open connections finished, then stopped."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.polling import wait_until
from tests.tcp_proxy import splice


class RoundRobinBalancer:
    def __init__(self) -> None:
        self._upstreams: list[int] = []
        self._turn = 0
        self._open: Counter[int] = Counter()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def add(self, port: int) -> None:
        self._upstreams.append(port)

    async def take_out(self, port: int) -> None:
        """No new connection goes to `port`; returns once the ones it holds have closed."""
        self._upstreams.remove(port)

        async def drained() -> bool:
            return self._open[port] == 0

        await wait_until(drained, f"connections to 127.0.0.1:{port} to finish")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if not self._upstreams:
            client_writer.close()
            return
        port = self._upstreams[self._turn % len(self._upstreams)]
        self._turn += 1
        self._open[port] += 1
        try:
            await splice(client_reader, client_writer, "127.0.0.1", port)
        finally:
            self._open[port] -= 1
