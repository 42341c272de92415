"""The pages behind the login: home, the audit trail, and creating an account (the operator
role's first action, the same code path as `payouts account create`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payouts.actions.audit import AuditFilter, AuditResult, audit_page
from payouts.actions.operator import Operator
from payouts.console.access import signed_in
from payouts.console.acting import acting
from payouts.console.query_filters import BadQuery, entry_number, moment, page_links, text
from payouts.console.rendering import render

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import Settings

__all__ = ["accounts", "audit", "create_account", "home"]

AUDIT_PAGE_SIZE = 50
RESULTS = [result.value for result in AuditResult]
# Longest user id or currency the form takes; the CLI takes what the database does.
MAX_FIELD_CHARS = 128


@signed_in
async def home(request: Request) -> Response:
    return render(request, "home.html")


def _audit_filter(query: dict[str, str]) -> tuple[AuditFilter, int | None]:
    result = query.get("result") or None
    if result is not None and result not in RESULTS:
        raise BadQuery(f"result: one of {', '.join(RESULTS)}")
    filters = AuditFilter(
        actor=text(query, "actor"),
        action=text(query, "action"),
        result=AuditResult(result) if result else None,
        since=moment(query, "since"),
        until=moment(query, "until"),
    )
    return filters, entry_number(query, "before")


@signed_in
async def audit(request: Request) -> Response:
    query = {key: value.strip() for key, value in request.query_params.items()}
    context: dict[str, Any] = {"query": query, "results": RESULTS}
    try:
        filters, before = _audit_filter(query)
    except BadQuery as error:
        return render(request, "audit.html", {**context, "error": str(error)}, status=400)
    settings: Settings = request.app.state.settings
    # One more than a page: whether an older page exists, without counting.
    rows = await audit_page(settings, filters, before, AUDIT_PAGE_SIZE + 1)
    older = rows[AUDIT_PAGE_SIZE - 1].id if len(rows) > AUDIT_PAGE_SIZE else None
    links = page_links("/audit", query, before, older)
    context |= {
        "entries": rows[:AUDIT_PAGE_SIZE],
        "newest_link": links.newest,
        "older_link": links.older,
    }
    return render(request, "audit.html", context)


@signed_in
async def accounts(request: Request) -> Response:
    return render(request, "accounts.html")


@signed_in
async def create_account(request: Request) -> Response:
    form, actor = await acting(request, "account.create")
    user = form.get("user", "").strip()
    currency = form.get("currency", "").strip()
    if not (0 < len(user) <= MAX_FIELD_CHARS and 0 < len(currency) <= MAX_FIELD_CHARS):
        problem = f"Give a user id and a currency, each of 1 to {MAX_FIELD_CHARS} characters."
        return render(request, "accounts.html", {"error": problem}, status=400)
    settings: Settings = request.app.state.settings
    created = await Operator(settings).create_account(user, currency, actor)
    return render(request, "accounts.html", {"created": created})
