"""Serving the ingress with uvicorn, configured from the settings file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn

from ingress.app import create_app

if TYPE_CHECKING:
    from collections.abc import Mapping

    from schema.settings import Settings

__all__ = ["serve"]


def serve(settings: Settings, environ: Mapping[str, str]) -> None:
    app = create_app(settings, environ)
    config = uvicorn.Config(
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
    )
    uvicorn.Server(config).run()
