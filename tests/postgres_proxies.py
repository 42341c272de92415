"""Proxies in front of the test Postgres that know just enough of its wire protocol to play a
server of a replicated database: one that refuses writes (a standby, a fenced primary), and one
that loses the answer to a COMMIT it let through (a primary that died mid-commit)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self
from urllib.parse import urlsplit, urlunsplit

# The first message's code when a client asks for TLS or GSS encryption before starting up.
_ENCRYPTION_REQUESTS = frozenset({80877103, 80877104})
# What asyncpg sends to commit a transaction, as a simple query.
_COMMIT = b"COMMIT"


def naming_hosts(database_url: str, *hosts: str) -> str:
    """A database's URL, credentials and all, naming `hosts` (host:port) in turn, as the URL of
    a primary and its standbys does."""
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@{','.join(hosts)}"))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class _Proxy:
    """127.0.0.1:<port> forwarding to the Postgres a URL names; subclasses shape the traffic."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def host(self) -> str:
        """This proxy as one host of a multi-host URL."""
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        await self._relay((reader, writer), upstream)

    async def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        await asyncio.gather(_copy(client[0], server[1]), _copy(server[0], client[1]))


class ReadOnlyServer(_Proxy):
    """Starts every session with `default_transaction_read_only = on`: the server then reports
    itself read-only at start-up, as asyncpg's `target_session_attrs=read-write` check reads it
    (before it asks whether the server is in hot standby), and refuses every write."""

    async def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        reader, writer = client
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if int.from_bytes(body[:4]) not in _ENCRYPTION_REQUESTS:
                    break
                # No encryption: the start-up message must come in clear to be rewritten.
                writer.write(b"N")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            server[1].close()
            return
        # Protocol version, then name and value pairs ended by an empty name.
        startup = body[:-1] + b"default_transaction_read_only\0on\0\0"
        server[1].write((len(startup) + 4).to_bytes(4) + startup)
        await super()._relay(client, server)


class CommitAnswerLost(_Proxy):
    """Lets the first COMMIT through it reach the server and be answered, then drops the
    client's connection instead of passing the answer on: committed, and the client cannot
    know it. Later connections are forwarded untouched."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._armed = True
        self.lost = asyncio.Event()

    async def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        committing = asyncio.Event()

        async def to_server() -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await client[0].read(65536):
                    server[1].write(data)
                    await server[1].drain()
                    if self._armed and _COMMIT in data:
                        self._armed = False
                        committing.set()
            server[1].close()

        async def to_client() -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await server[0].read(65536):
                    if committing.is_set():
                        # asyncpg waits for each answer before it sends more: this is the
                        # COMMIT's, so the transaction is committed.
                        client[1].transport.abort()
                        server[1].close()
                        self.lost.set()
                        return
                    client[1].write(data)
                    await client[1].drain()
            client[1].close()

        await asyncio.gather(to_server(), to_client())
