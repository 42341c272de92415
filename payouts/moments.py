"""How `payouts` writes a moment for a person to read, on the console's pages and in the reasons
its commands print: in UTC, to the second, saying so."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc"]


def utc(moment: datetime) -> str:
    """`moment` as "2026-12-07 11:30:05 UTC"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
