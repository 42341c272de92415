"""How the pages count things: the singular for one, the plural for any other number."""

from __future__ import annotations

__all__ = ["counted", "plural"]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`singular` for 1, else `plural_form` (`singular` with an "s" unless given): the words of
    a count, its verb included ("was", "were")."""
    if count == 1:
        return singular
    return plural_form if plural_form is not None else f"{singular}s"


def counted(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` with thousands separators and its noun: "1 message", "2,000 messages"."""
    return f"{count:,} {plural(count, singular, plural_form)}"
