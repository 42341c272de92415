"""What the list pages and the actions of the console share: the filters read from a page's URL
(so a filtered view can be linked), the links to its other pages, and, for an action, the form
with its CSRF token, the operator role and the actor its audit entry names."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import asyncpg

from payouts.actions.audit import Actor, ActorKind
from payouts.console.access import client_address, posted_form, require_role
from payouts.console.query_filters import text
from payouts.console.rendering import render
from schema.logs import log
from schema.settings import ConsoleRole

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ACTION_FAILURES", "LIST_PAGE_SIZE", "acting", "failed", "link", "query_of"]

logger = logging.getLogger("payouts.console")
LIST_PAGE_SIZE = 50
# What an allowed action may fail with once it started: Postgres refusing or aborting its
# transaction. The action layer has written the failed audit entry by then.
ACTION_FAILURES = (asyncpg.PostgresError,)


def query_of(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The filters of a list page among `names`, stripped, empty ones left out; raises BadQuery
    (a 400 page) for one no record can hold, rather than sending it to the database."""
    stripped = {name: request.query_params.get(name, "").strip() for name in names}
    return {name: value for name in names if (value := text(stripped, name))}


def link(path: str, query: dict[str, str], **changes: str | None) -> str:
    """`path` with `query`, changed by `changes` (None drops a key)."""
    merged = {**query, **changes}
    kept = {key: value for key, value in merged.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


async def acting(request: Request, action: str) -> tuple[dict[str, str], Actor]:
    """The posted form (refused without its CSRF token) and the operator acting, refused
    unless their role is `operator`: both refusals are audited as `action`'s."""
    form = await posted_form(request)
    operator = require_role(request, ConsoleRole.OPERATOR, action, form)
    return form, Actor(operator.name, ActorKind.CONSOLE, client_address(request))


def failed(request: Request, action: str, error: Exception) -> Response:
    """The page of an action that failed after it started (already audited as failed)."""
    log(logger, logging.ERROR, "console action failed", action=action, error=repr(error))
    message = (
        f"{action} failed and changed nothing: {type(error).__name__}: {error}. It is recorded "
        "as failed in the audit trail."
    )
    return render(request, "error.html", {"message": message}, status=500)
