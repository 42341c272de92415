"""The console's pages: the Jinja2 templates beside this module, with what every page shows
(who is signed in, the CSRF token of its forms), times in UTC with their age, and counts with
their nouns in the singular or the plural."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.templating import Jinja2Templates

from payouts.console.access import csrf_token, signed_in_operator
from payouts.console.wording import counted, plural
from payouts.moments import utc
from schema.events import decimal_text

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["STATIC_DIR", "age", "render", "shown", "utc"]

STATIC_DIR = Path(__file__).parent / "static"


def age(moment: datetime, now: datetime | None = None) -> str:
    """How long ago `moment` was, in its largest whole unit: "12 s ago", "3 h ago"."""
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def shown(value: Any) -> Any:
    """What `{{ value }}` prints: an amount in plain digits, as Postgres holds it ("20000", never
    Decimal's "2E+4"); anything else as it is."""
    return decimal_text(value) if isinstance(value, Decimal) else value


_templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# Applied to every {{ }} of the templates, which are compiled after this.
_templates.env.finalize = shown
_templates.env.filters["utc"] = utc
_templates.env.filters["age"] = age
_templates.env.filters["count"] = "{:,}".format
_templates.env.filters["plural"] = plural
_templates.env.filters["counted"] = counted


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    shown = {
        "operator": signed_in_operator(request),
        "csrf_token": csrf_token(request),
        **(context or {}),
    }
    return _templates.TemplateResponse(request, template, shown, status_code=status)
