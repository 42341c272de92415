"""Serving the ingress with uvicorn, configured from the settings file: one process, or several
sharing the listening socket (uvicorn's workers), their metrics rendered together."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from ingress.app import create_app
from ingress.protocols import validate_providers
from schema.logs import log
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

logger = logging.getLogger("ingress.server")

# The settings the command validated, as a file each further process reads: not the
# configuration file itself, which may have been edited since (a mounted ConfigMap updates in
# place), so a process replaced later runs what its siblings run, and cannot fail to start.
SETTINGS_SNAPSHOT_ENV = "PAYOUTS_INGRESS_SETTINGS_SNAPSHOT"


def serve(settings: Settings, environ: Mapping[str, str], processes: int = 1) -> int:
    """Serve until stopped: exit code 0. 1, with one error line naming the cause, when uvicorn
    gave up before serving (a port taken, an address not on this host, a process of several
    that failed to start): it logs why and then exits or just returns, never raising."""
    address = f"{settings.ingress.host}:{settings.ingress.port}"
    errors = _StartupErrors()
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addHandler(errors)
    try:
        started = _serve(settings, environ, processes)
    except SystemExit:
        started = False  # uvicorn's own exit at start-up, after it logged why
    finally:
        uvicorn_logger.removeHandler(errors)
    if started:
        return 0
    log(
        logger,
        logging.ERROR,
        "ingress did not start",
        address=address,
        error=errors.cause(),
        exit_code=1,
    )
    return 1


class _StartupErrors(logging.Handler):
    """The first errors uvicorn logs: why it gave up, when it did (it logs the cause, then exits
    or returns). Only the first few are kept: the handler stays while the ingress serves."""

    KEPT = 10

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self.KEPT:
            self.records.append(record)

    def cause(self) -> str:
        """The exception behind the first error logged with one (the app's start-up failed),
        or else the first error's message (uvicorn logs a failed bind as the OSError's text)."""
        for record in self.records:
            if record.exc_info is not None and record.exc_info[1] is not None:
                error = record.exc_info[1]
                return f"{type(error).__name__}: {error}"
        if self.records:
            return self.records[0].getMessage()
        return "uvicorn stopped before serving and logged no error"


def _serve(settings: Settings, environ: Mapping[str, str], processes: int) -> bool:
    """Whether the ingress started serving (and has now stopped)."""
    if processes == 1:
        server = uvicorn.Server(uvicorn_config(create_app(settings, environ), settings))
        server.run()
        return server.started
    # Built once here for its checks alone (a secret not exported, say): in a process, the
    # ConfigError is not uvicorn's start-up failure, so its supervisor would replace that
    # process as it dies, forever.
    create_app(settings, environ)
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
        return _serve_processes(settings, processes)


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


def _serve_processes(settings: Settings, processes: int) -> bool:
    """Whether every process started: uvicorn's supervisor stops them all and returns, as after
    SIGTERM, once one exits with uvicorn's start-up failure code."""
    config = uvicorn_config(
        "ingress.server:app_from_environment", settings, factory=True, workers=processes
    )
    # uvicorn's supervisor: restarts a process that dies, stops all on SIGTERM.
    supervisor = Multiprocess(config, sockets=[listening_socket(config)])
    supervisor.run()
    return all(process.exitcode != STARTUP_FAILURE for process in supervisor.processes)


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
