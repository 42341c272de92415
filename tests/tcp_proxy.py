"""A TCP proxy a test owns, to cut a process off from a service without touching the service."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones
    until `restore()`, as a network partition would; `freeze()` holds every byte, closing
    nothing, until `thaw()`, as a stalled network would."""

    @classmethod
    async def in_front_of(cls, url: str) -> TcpProxy:
        """A started proxy to the service a URL names (postgresql://…, amqp://…)."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 0)
        await proxy.start()
        return proxy

    def url_through(self, url: str) -> str:
        """The same URL, credentials and all, pointed at this proxy."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{self.port}"))

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        await splice(
            client_reader,
            client_writer,
            *self._target,
            writers=self._writers,
            flowing=self._flowing,
        )

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop listening: new connections are refused
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()


async def splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    host: str,
    port: int,
    writers: set[asyncio.StreamWriter] | None = None,
    flowing: asyncio.Event | None = None,
) -> None:
    """Connect a client to host:port and copy bytes both ways until both sides close; `writers`
    holds both ends meanwhile, for whoever must abort them; bytes wait while `flowing` is clear."""
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    ends = {client_writer, upstream_writer}
    if writers is not None:
        writers |= ends

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if flowing is not None:
                    await flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    try:
        await asyncio.gather(
            pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer)
        )
    finally:
        if writers is not None:
            writers -= ends
