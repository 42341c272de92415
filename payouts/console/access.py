"""Who is asking: the operator whose session is open (the signed cookie names it, its row in
Postgres says it is neither revoked nor expired), the login every page needs, the CSRF token
every form carries, and the role an action needs. A refusal is a `Refused`, which the
application answers with a page of its status and writes to the audit trail."""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.responses import RedirectResponse

from payouts.actions.audit import ANONYMOUS
from payouts.actions.console_sessions import session_operator
from schema.settings import ConsoleRole

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import ConsoleOperator, Settings

__all__ = [
    "CSRF_FIELD",
    "Refused",
    "actor",
    "check_session",
    "client_address",
    "csrf_token",
    "posted_form",
    "require_role",
    "safe_next",
    "session_token",
    "settings_of",
    "signed_in",
    "signed_in_operator",
    "start_session",
]

SESSION_OPERATOR = "operator"
# The token that names the session's row (console_sessions), which a logout or a sign-out
# revokes.
SESSION_ROW = "row"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
# The largest form the console takes, and its most fields: its forms are a few short fields,
# and a login form is open to anyone.
MAX_FORM_BYTES = 16_384
MAX_FORM_FIELDS = 20


class Refused(Exception):
    """A request the console will not serve: `status`, a page saying why, and an audit entry
    (`action` refused for `reason`, with the fields of the form it `attempted`)."""

    def __init__(
        self,
        status: int,
        message: str,
        action: str,
        reason: str,
        attempted: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.action = action
        self.reason = reason
        self.attempted = attempted or {}


def settings_of(request: Request) -> Settings:
    """The console's checked settings."""
    settings: Settings = request.app.state.settings
    return settings


async def check_session(request: Request) -> ConsoleOperator | None:
    """The operator the session names, if its row is open (neither revoked nor expired) and
    theirs, and the configuration still has them (one removed from the file is signed out at
    the console's next start). A session refused is cleared, so that the browser drops its
    cookie. DatabaseUnavailable when Postgres does not answer: no row, no session."""
    operator = None
    token = request.session.get(SESSION_ROW)
    if isinstance(token, str):
        name = request.session.get(SESSION_OPERATOR)
        settings = settings_of(request)
        opened_by = await session_operator(settings, token)
        if opened_by is not None and opened_by == name:
            operator = next((o for o in settings.console.operators if o.name == name), None)
        if operator is None:
            request.session.clear()
    request.state.operator = operator
    return operator


def signed_in_operator(request: Request) -> ConsoleOperator | None:
    """The operator `check_session` found for this request; None before it or when refused."""
    operator: ConsoleOperator | None = getattr(request.state, "operator", None)
    return operator


def session_token(request: Request) -> str | None:
    """The token the browser's session carries, if any: open once `check_session` found it so."""
    token = request.session.get(SESSION_ROW)
    return token if isinstance(token, str) else None


def actor(request: Request) -> str:
    operator = signed_in_operator(request)
    return operator.name if operator else ANONYMOUS


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (a login form has one before any login)."""
    token: str = request.session.setdefault(SESSION_CSRF, secrets.token_urlsafe(32))
    return token


def start_session(request: Request, operator: ConsoleOperator, token: str) -> None:
    """A new session for `operator`, its row's `token` and a new CSRF token: nothing of the
    anonymous one is kept. The cookie is not written again until logout, so it expires
    `max_age` after this, as its row does."""
    request.session.clear()
    request.session[SESSION_OPERATOR] = operator.name
    request.session[SESSION_ROW] = token
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)


async def posted_form(request: Request) -> dict[str, str]:
    """The fields of a POSTed form (URL-encoded, as every form of the console is; the first of
    a repeated field), refused (403) unless it carries the session's CSRF token, and (413) when
    it is larger than any form of the console, before it is all read."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(
                413,
                f"This form is over {MAX_FORM_BYTES} bytes, more than any form of this console.",
                action="form",
                reason=f"form over {MAX_FORM_BYTES} bytes",
            )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = ""  # not a form of ours: it has no token either
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise Refused(
            413,
            f"This form has over {MAX_FORM_FIELDS} fields, more than any form of this console.",
            action="form",
            reason=f"form over {MAX_FORM_FIELDS} fields",
        ) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    expected = request.session.get(SESSION_CSRF)
    sent = form.get(CSRF_FIELD, "")
    if not (expected and hmac.compare_digest(sent.encode(), str(expected).encode())):
        raise Refused(
            403,
            "This form has expired or did not come from this console. Go back, reload the "
            "page and send it again.",
            action="csrf",
            reason="missing or wrong CSRF token",
        )
    return form


def require_role(
    request: Request, role: ConsoleRole, action: str, form: dict[str, str] | None = None
) -> ConsoleOperator:
    """The signed-in operator, refused (403) unless their role allows `role`'s actions; the
    refusal's audit entry keeps what `form` asked for (its CSRF token left out)."""
    operator = signed_in_operator(request)
    if operator is None or (role is ConsoleRole.OPERATOR and operator.role is not role):
        raise Refused(
            403,
            f"This needs the {role.value} role; you are signed in as a "
            f"{operator.role.value if operator else 'nobody'}. Ask whoever keeps the console's "
            "configuration.",
            action=action,
            reason=f"role {operator.role.value if operator else 'none'} is not {role.value}",
            attempted={name: value for name, value in (form or {}).items() if name != CSRF_FIELD},
        )
    return operator


def safe_next(wanted: str | None) -> str:
    """`wanted` if it is a path of this console, else the home page: never another site."""
    if not wanted or not wanted.startswith("/") or wanted.startswith("//"):
        return "/"
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or "\\" in wanted or not wanted.isprintable():
        return "/"
    return wanted


def signed_in(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """`handler` for signed-in operators (one query of their session's row); anyone else goes
    to the login page, which brings them back to what they wanted."""

    @functools.wraps(handler)
    async def checked(request: Request) -> Response:
        if await check_session(request) is None:
            if request.method != "GET":
                # A form sent without a session is not sent again after the login.
                return RedirectResponse("/login", status_code=303)
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(wanted, safe='')}", status_code=303)
        return await handler(request)

    return checked
