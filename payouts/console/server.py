"""Starting the console: the checks that refuse a console nobody could use safely, then one
uvicorn process on the console's own address."""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn

from payouts.console.app import create_app
from schema.errors import ConfigError
from schema.settings import with_file_operators

if TYPE_CHECKING:
    from collections.abc import Mapping

    from schema.settings import Settings

__all__ = ["MIN_SECRET_BYTES", "checked_secret", "serve"]

# The key signs every session (HMAC-SHA1 in itsdangerous): at least as long as its output and
# more, so that guessing it is never the easy way in.
MIN_SECRET_BYTES = 32
KEY_RECIPE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def checked_secret(settings: Settings, environ: Mapping[str, str]) -> str:
    """The session signing key, once the configuration allows a console: at least one operator,
    a port other than the ingress's, and a long enough key. ConfigError names what to fix."""
    console = settings.console
    if not console.operators:
        raise ConfigError(
            "console.operators: no operator is configured, so nobody could log in; add a "
            '[[console.operators]] with name, role ("viewer" or "operator") and the '
            "password_hash that `payouts console hash-password` prints, to the configuration "
            "or to the file console.operators_file names (docs/console.md)"
        )
    if console.port and console.port == settings.ingress.port:
        raise ConfigError(
            f"console.port {console.port} is also ingress.port: the ingress faces the "
            "providers on the internet, the console must not; give the console a port of its own"
        )
    name = console.session_secret_env
    secret = environ.get(name, "")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        state = "is not set" if not secret else f"has {len(secret.encode())} bytes"
        raise ConfigError(
            f"console.session_secret_env: environment variable {name} {state}; it must hold at "
            f"least {MIN_SECRET_BYTES} random bytes, e.g. the output of {KEY_RECIPE}"
        )
    return secret


def serve(settings: Settings, environ: Mapping[str, str]) -> int:
    """Serve, with the operators of console.operators_file too, until SIGTERM or SIGINT
    (uvicorn then ends the process by that signal, so that whoever started it sees why); 1 if
    uvicorn could not start (the port taken, say)."""
    settings = with_file_operators(settings)
    app = create_app(settings, checked_secret(settings, environ))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.console.host,
            port=settings.console.port,
            # The client address of the audit trail and the login cap is the peer's own.
            proxy_headers=False,
            server_header=False,
            log_config=None,
            access_log=False,
            # Its shutdown stops the replays and purges under way (`create_app`).
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    try:
        server.run()
    except SystemExit:
        # uvicorn exits this way (its code 3) when it cannot bind, and its log says why; 3 is
        # what the `payouts` command answers for a service it cannot reach, so say 1.
        return 1
    return 0 if server.started else 1
