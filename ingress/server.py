"""Serving the ingress with uvicorn, configured from the settings file: one process, or several
sharing the listening socket (uvicorn's workers), their metrics rendered together."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from ingress.app import create_app
from ingress.protocols import validate_providers
from schema.metrics import MULTIPROCESS_DIR_ENV, forget_process
from schema.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.applications import Starlette


__all__ = [
    "app_from_environment",
    "listening_socket",
    "serve",
    "settings_from_snapshot",
    "settings_snapshot",
    "uvicorn_config",
]

# The settings the command validated, as a file each further process reads: not the
# configuration file itself, which may have been edited since (a mounted ConfigMap updates in
# place), so a process replaced later runs what its siblings run, and cannot fail to start.
SETTINGS_SNAPSHOT_ENV = "PAYOUTS_INGRESS_SETTINGS_SNAPSHOT"


def serve(settings: Settings, environ: Mapping[str, str], processes: int = 1) -> None:
    if processes == 1:
        uvicorn.Server(uvicorn_config(create_app(settings, environ), settings)).run()
        return
    # Each process is a fresh interpreter importing the app by name: it reads the settings this
    # one validated and writes its metrics where all of them can be read.
    with contextlib.ExitStack() as cleanup:
        # Private (0700): the settings hold the database URL, as the configuration file does.
        private = Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="payouts-ingress-"))
        )
        snapshot = private / "settings.json"
        snapshot.write_text(settings_snapshot(settings), encoding="utf-8")
        os.environ[SETTINGS_SNAPSHOT_ENV] = str(snapshot)
        if not os.environ.get(MULTIPROCESS_DIR_ENV):
            os.environ[MULTIPROCESS_DIR_ENV] = cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="payouts-ingress-metrics-")
            )
        # With the operator's directory set before start, this supervisor wrote its gauges there
        # at 0 when it imported the app; it serves nothing and never updates them, and it lives.
        forget_process(os.getpid(), os.environ[MULTIPROCESS_DIR_ENV])
        _serve_processes(settings, processes)


def app_from_environment() -> Starlette:
    """The app of one of several ingress processes (uvicorn imports this by name)."""
    snapshot = Path(os.environ[SETTINGS_SNAPSHOT_ENV])
    settings = settings_from_snapshot(snapshot.read_text(encoding="utf-8"))
    validate_providers(settings.providers)
    return create_app(settings, os.environ)


def settings_snapshot(settings: Settings) -> str:
    """`settings` as further processes read them back. Only the keys the file set: a key set to
    its default would count as given, and validate_providers refuses keys a protocol does not
    use."""
    return settings.model_dump_json(exclude_unset=True)


def settings_from_snapshot(snapshot: str) -> Settings:
    return Settings.model_validate_json(snapshot)


def _serve_processes(settings: Settings, processes: int) -> None:
    config = uvicorn_config(
        "ingress.server:app_from_environment", settings, factory=True, workers=processes
    )
    # uvicorn's supervisor: restarts a process that dies, stops all on SIGTERM.
    Multiprocess(config, sockets=[listening_socket(config)]).run()


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The port the processes share, as a socket that says it is TCP.

    uvicorn's own bind leaves the protocol number at 0; accepted connections inherit it, and
    asyncio then never sets TCP_NODELAY on them, so every answer on a kept-alive connection
    waited for the client's delayed ACK (uvicorn issue #3149; docs/benchmarks.md, *Found by this
    benchmark*).
    """
    bound = config.bind_socket()
    return socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.ingress.host,
        port=settings.ingress.port,
        # Client addresses are resolved by ingress.client_ip against our own trusted_proxies.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.ingress.keep_alive_seconds,
        **options,
    )
