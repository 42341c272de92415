"""The console's answer to an address it has no page at, or a method a page does not take: its
own error page with the status, saying what to do, instead of Starlette's bare text."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException

from payouts.console.access import check_session
from payouts.console.rendering import render
from schema.errors import ServiceUnavailable
from schema.logs import log

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["http_error"]

logger = logging.getLogger("payouts.console")


def _message(error: HTTPException, method: str, signed_in: bool) -> str:
    where = "the menu above" if signed_in else "the console's pages once you are signed in"
    if error.status_code == 404:
        # The same words for every address, so that a stranger learns nothing of the pages.
        return f"There is no page at this address. Pick one from {where}."
    if error.status_code == 405:
        # Starlette lists a route's methods in set order: sorted, the page reads the same each time.
        allow = (error.headers or {}).get("Allow")
        allowed = ", ".join(sorted(allow.split(", "))) if allow else "another method"
        how = (
            "a button of the console sends it (Log out, for one, is a button)"
            if allowed == "POST"
            else "open it from a link"
        )
        return (
            f"This address does not answer a {method}: it takes {allowed}; {how}. "
            f"Go back to {where}."
        )
    return f"{error.detail}. Go back to {where}."


async def http_error(request: Request, error: Exception) -> Response:
    """The error page of `error`'s status (its headers, `Allow` of a 405, kept), with the menu
    for a signed-in operator; a visitor without a session sees no menu, as on the login page."""
    assert isinstance(error, HTTPException)
    try:
        # No route ran, so nothing looked at the session yet; one without a row costs no query.
        signed_in = await check_session(request) is not None
    except ServiceUnavailable as away:
        log(logger, logging.WARNING, "error page without the session checked", error=str(away))
        signed_in = False
    message = _message(error, request.method, signed_in)
    page = render(
        request, "error.html", {"heading": error.detail, "message": message}, error.status_code
    )
    page.headers.update(error.headers or {})
    return page
