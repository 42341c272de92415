"""How the ingress serves HTTP: answers on the shared port must not wait for delayed ACKs, and
idle kept-alive connections stay open as long as configured."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ingress.protocols import validate_providers
from ingress.server import (
    listening_socket,
    settings_from_snapshot,
    settings_snapshot,
    uvicorn_config,
)
from schema.settings import IngressSettings, Settings, load_settings

REQUEST = b"GET / HTTP/1.1\r\nHost: ingress\r\n\r\n"


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


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Send a request on a kept-alive connection: True if it is answered, False if the server
    has closed the connection meanwhile."""
    writer.write(REQUEST)
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
    except ConnectionError:
        return False
    if not status:
        return False
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), 5)  # headers, then the body
    return True


async def test_idle_kept_alive_connections_stay_open_as_configured() -> None:
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    settings = Settings(ingress=IngressSettings(port=0, keep_alive_seconds=2))
    config = uvicorn_config(app, settings)
    listener = listening_socket(config)
    listener.listen()  # connections wait in the backlog until the server serves
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        assert await _answered(reader, writer)
        await asyncio.sleep(1)  # idle, but not for long enough
        assert await _answered(reader, writer)
        await asyncio.sleep(3)  # idle past keep_alive_seconds, not past uvicorn's default 5 s
        assert await asyncio.wait_for(reader.read(), 0.5) == b""  # closed by the server
        writer.close()
    finally:
        server.should_exit = True
        await serving


def test_the_default_keep_alive_outlasts_the_proxies_in_front() -> None:
    # ingress-nginx's upstream keep-alive timeout and AWS's load balancers' idle timeout: 60 s.
    assert IngressSettings().keep_alive_seconds > 60


def test_further_processes_read_back_exactly_the_settings_validated_at_start(
    tmp_path: Path,
) -> None:
    """Equal, with the same keys given (a key given where a protocol does not use it is refused):
    the example's every protocol, plus networks, a decimal and a secret being rotated."""
    extra = """
[[providers]]
name = "ow-rotating"
protocol = "offerwall_md5"
route = "/cb/ow-rotating"
secret_env = ["OW_KEY", "OW_KEY_NEXT"]
default_currency = "COIN"
max_amount = "500.50"
amount_decimal_places = 2
account_policy = "require_existing"
ip_allowlist = ["198.51.100.0/24", "2001:db8::/32"]
"""
    config = tmp_path / "payouts.toml"
    config.write_text(Path("deploy/payouts.example.toml").read_text() + extra)
    settings = load_settings(config, environ={})
    read_back = settings_from_snapshot(settings_snapshot(settings))
    assert read_back == settings
    assert [p.model_fields_set for p in read_back.providers] == [
        p.model_fields_set for p in settings.providers
    ]
    validate_providers(read_back.providers)
