"""Reading a list page's filters from its URL, each refused with what to write instead, and the
links to its newest and older pages (keyset paging, newest first)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MAX_ENTRY_NUMBER",
    "BadQuery",
    "PageLinks",
    "entry_number",
    "moment",
    "page_links",
    "text",
]

# Postgres' bigint: a larger number would fail in the database rather than match nothing.
MAX_ENTRY_NUMBER = 2**63 - 1
# Longer than any id the records hold (a user or transaction id: 128 characters).
MAX_TEXT_CHARS = 256


class BadQuery(ValueError):
    """A filter of a list page that cannot be read; the message says which and how."""


def moment(query: Mapping[str, str], key: str) -> datetime | None:
    value = query.get(key)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{key}: write a UTC time as 2026-12-07T04:30 or 2026-12-07") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def entry_number(query: Mapping[str, str], key: str) -> int | None:
    value = query.get(key)
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_ENTRY_NUMBER):
        raise BadQuery(f"{key}: an entry number, as the page's links give it")
    return int(value)


def text(query: Mapping[str, str], key: str) -> str | None:
    """A free-text filter; one no record can hold (a control character, which Postgres or the
    ingress refuses, or an overlong one) is refused rather than sent to the database."""
    value = query.get(key)
    if not value:
        return None
    if len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise BadQuery(f"{key}: at most {MAX_TEXT_CHARS} printable characters")
    return value


class PageLinks:
    """The newest page's and the next older page's links of a list, kept filtered as asked."""

    def __init__(self, newest: str | None, older: str | None) -> None:
        self.newest = newest
        self.older = older


def page_links(
    path: str, query: Mapping[str, str], before: int | None, next_before: int | None
) -> PageLinks:
    """Links for a page read older than `before` (None: the newest page), whose last shown entry
    is `next_before` when an older page exists."""
    kept = {key: value for key, value in query.items() if value and key != "before"}
    return PageLinks(
        newest=f"{path}?{urlencode(kept)}" if before is not None else None,
        older=(
            f"{path}?{urlencode({**kept, 'before': next_before})}"
            if next_before is not None
            else None
        ),
    )
