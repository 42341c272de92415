"""The console application: its routes, its signed sessions, and the answers to a refusal, an
unreachable database or an address without a page, wrapped in the security headers of every
answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from payouts.actions.audit import Actor, ActorKind, AuditResult, record_audit_or_log
from payouts.console import (
    dead_letter_pages,
    dead_letter_run_pages,
    held_pages,
    order_pages,
    payout_pages,
)
from payouts.console.access import Refused, actor, client_address
from payouts.console.headers import SecurityHeaders
from payouts.console.http_errors import http_error
from payouts.console.login import login, login_page, logout
from payouts.console.login_limits import LoginCaps
from payouts.console.pages import accounts, audit, create_account, home
from payouts.console.passwords import PasswordCheck
from payouts.console.providers import providers
from payouts.console.query_filters import BadQuery
from payouts.console.rendering import STATIC_DIR, render
from payouts.console.run_registry import RunRegistry
from schema.errors import ServiceUnavailable
from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import Settings

__all__ = ["ROUTES", "SESSION_COOKIE", "create_app"]

logger = logging.getLogger("payouts.console")
SESSION_COOKIE = "payouts_console"
# At shutdown, how long a replay or purge under way has to finish its current message and record
# how far it got before it is cancelled (its start is recorded already).
RUN_STOP_GRACE_SECONDS = 5.0


async def healthz(request: Request) -> Response:
    """The liveness of the process for a supervisor's probe, without login: it tells nothing of
    the records, and a console whose database is away still answers, saying so on each page."""
    return PlainTextResponse("ok\n")


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", home, methods=["GET"]),
    Route("/audit", audit, methods=["GET"]),
    Route("/accounts", accounts, methods=["GET"]),
    Route("/accounts", create_account, methods=["POST"]),
    Route("/payouts", payout_pages.search, methods=["GET"]),
    Route("/payouts/transaction", payout_pages.transaction, methods=["GET"]),
    Route("/payouts/{payout_id:int}", payout_pages.payout, methods=["GET"]),
    Route("/payouts/{payout_id:int}/proofs/{image_id:int}", payout_pages.proof_image),
    Route("/users/{user_id:path}", payout_pages.user, methods=["GET"]),
    Route("/dead-letters", dead_letter_pages.dead_letters, methods=["GET"]),
    Route("/dead-letters/replay", dead_letter_run_pages.replay, methods=["POST"]),
    Route("/dead-letters/purge", dead_letter_run_pages.purge, methods=["POST"]),
    Route("/dead-letters/runs/{run_id}", dead_letter_run_pages.run_page, methods=["GET"]),
    Route("/dead-letters/runs/{run_id}/stop", dead_letter_run_pages.stop, methods=["POST"]),
    Route("/dead-letter", dead_letter_pages.dead_letter, methods=["GET"]),
    Route("/held", held_pages.held, methods=["GET"]),
    Route("/held", held_pages.create_held_account, methods=["POST"]),
    Route("/orders", order_pages.order_list, methods=["GET"]),
    Route("/orders/cancel", order_pages.cancel, methods=["POST"]),
    Route("/providers", providers, methods=["GET"]),
    # The stylesheet, served to the login page too: it holds nothing of the records.
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    who = Actor(actor(request), ActorKind.CONSOLE, client_address(request))
    detail: dict[str, Any] = {"reason": error.reason}
    if error.attempted:
        detail["form"] = error.attempted
    entry = who.entry(error.action, AuditResult.REFUSED, request.url.path, detail)
    # The refusal stands without its entry if Postgres does not answer; the log keeps it.
    await record_audit_or_log(request.app.state.settings, entry)
    return render(request, "error.html", {"message": error.message}, status=error.status)


async def _unavailable(request: Request, error: Exception) -> Response:
    log(logger, logging.ERROR, "console request failed: service unavailable", error=str(error))
    message = (
        "The console cannot reach its database right now, which it needs to check each "
        "session, show the records and write the audit trail. Try again in a moment."
    )
    return render(request, "error.html", {"message": message}, status=503)


async def _bad_query(request: Request, error: Exception) -> Response:
    # A filter of a list page that cannot be read: the page says which and how to write it.
    return render(request, "error.html", {"message": str(error)}, status=400)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    runs: RunRegistry = app.state.dead_letter_runs
    await runs.stop_all(RUN_STOP_GRACE_SECONDS)


def create_app(
    settings: Settings,
    session_secret: str,
    *,
    dead_letters_browsed: int = dead_letter_pages.BROWSED_PER_VIEW,
) -> SecurityHeaders:
    """The console for `settings` (checked by `payouts.console.server.checked_secret`), signing
    its session cookies with `session_secret`; a view of the Dead letters list browses at most
    `dead_letters_browsed` messages."""
    console = settings.console
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=console.session_max_age_seconds,
                same_site="strict",
                https_only=console.secure_cookies,
            )
        ],
        exception_handlers={
            Refused: _refused,
            ServiceUnavailable: _unavailable,
            BadQuery: _bad_query,
            # An address without a page, a method a page does not take: the console's page.
            HTTPException: http_error,
        },
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.passwords = PasswordCheck(console.operators)
    app.state.login_caps = LoginCaps()
    app.state.dead_letters_browsed = dead_letters_browsed
    app.state.dead_letter_runs = RunRegistry()
    app.state.dead_letter_browsing = asyncio.Lock()
    return SecurityHeaders(app)
