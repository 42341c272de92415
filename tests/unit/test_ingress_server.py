"""The port several ingress processes share: answers on it must not wait for delayed ACKs."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from ingress.server import listening_socket


async def test_connections_accepted_on_the_shared_port_get_tcp_nodelay() -> None:
    config = uvicorn.Config("ingress.server:app_from_environment", host="127.0.0.1", port=0)
    listener = listening_socket(config)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 5) != 0  # Nagle off: answers leave at once
        writer.close()
