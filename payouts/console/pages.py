"""The pages behind the login: home, the audit trail, and creating an account (the operator
role's first action, the same code path as `payouts account create`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payouts.actions.audit import AuditFilter, AuditResult, audit_page
from payouts.actions.operator import AccountRefused, Operator
from payouts.console.access import signed_in
from payouts.console.acting import ACTION_FAILURES, acting, failed
from payouts.console.query_filters import BadQuery, entry_number, moment, page_links, text
from payouts.console.rendering import render

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from schema.settings import Settings

__all__ = ["accounts", "audit", "create_account", "home"]

AUDIT_PAGE_SIZE = 50
RESULTS = [result.value for result in AuditResult]


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
    settings: Settings = request.app.state.settings
    try:
        created = await Operator(settings).create_account(user, currency, actor)
    except AccountRefused as refused:
        return render(request, "accounts.html", {"error": str(refused)}, status=400)
    except ACTION_FAILURES as error:
        return failed(request, "account.create", error)
    return render(request, "accounts.html", {"created": created})
