"""Logging in and out: the login form, the password check under the failed-login cap, and the
audit entry of each attempt, written before the session changes (no entry, no session): a login
opens the session's row with its entry, a logout revokes it with its entry."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from starlette.responses import RedirectResponse

from payouts.actions.audit import Actor, ActorKind, AuditResult, record_audit
from payouts.actions.console_sessions import end_session, open_session
from payouts.console.access import (
    actor,
    check_session,
    client_address,
    posted_form,
    safe_next,
    session_token,
    signed_in,
    start_session,
)
from payouts.console.rendering import render
from schema.logs import log

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.actions.audit import AuditEntry
    from payouts.console.login_limits import LoginCaps
    from payouts.console.passwords import PasswordCheck
    from schema.settings import Settings

__all__ = ["login", "login_page", "logout"]

logger = logging.getLogger("payouts.console")
# Longer names are cut in the audit trail: whatever was typed is kept, not a novel.
MAX_LOGGED_NAME = 64


async def login_page(request: Request) -> Response:
    wanted = safe_next(request.query_params.get("next"))
    if await check_session(request) is not None:
        return RedirectResponse(wanted, status_code=303)
    return render(request, "login.html", {"next": wanted})


async def login(request: Request) -> Response:
    form = await posted_form(request)
    name = form.get("name", "")[:MAX_LOGGED_NAME]
    password = form.get("password", "")
    wanted = safe_next(form.get("next", "/"))
    address = client_address(request)
    settings: Settings = request.app.state.settings
    caps: LoginCaps = request.app.state.login_caps

    def entry(result: AuditResult, **detail: str) -> AuditEntry:
        return Actor(name, ActorKind.CONSOLE, address).entry("login", result, detail=detail)

    wait = caps.retry_after(address, name)
    if wait is not None:
        await record_audit(settings, entry(AuditResult.REFUSED, reason="too many failed logins"))
        log(logger, logging.WARNING, "console login refused: too many failures", address=address)
        answer = render(request, "login.html", {"next": wanted, "limited": True}, status=429)
        answer.headers["Retry-After"] = str(math.ceil(wait))
        return answer

    # Counted as a failure before the check, which takes a while: guesses sent together must
    # not all pass the cap while each is still being checked.
    caps.failed(address, name)
    passwords: PasswordCheck = request.app.state.passwords
    operator = await passwords.verify(name, password)
    if operator is None:
        await record_audit(settings, entry(AuditResult.REFUSED, reason="wrong name or password"))
        log(
            logger,
            logging.WARNING,
            "console login refused: wrong name or password",
            address=address,
        )
        return render(request, "login.html", {"next": wanted, "wrong": True}, status=401)

    # A login over an open session (another operator's, or the same one's) ends that one.
    login_entry = entry(AuditResult.OK, role=operator.role.value)
    token = await open_session(settings, login_entry, replacing=session_token(request))
    caps.succeeded(address, name)
    start_session(request, operator, token)
    log(logger, logging.INFO, "console login", operator=name, address=address)
    return RedirectResponse(wanted, status_code=303)


@signed_in
async def logout(request: Request) -> Response:
    await posted_form(request)
    settings: Settings = request.app.state.settings
    operator = Actor(actor(request), ActorKind.CONSOLE, client_address(request))
    token = session_token(request)
    assert token is not None  # @signed_in found its row open
    await end_session(settings, token, operator.entry("logout", AuditResult.OK))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
