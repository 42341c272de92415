"""Reading Postgres's plans (EXPLAIN (FORMAT JSON)) in tests that hold a query to its index."""

from __future__ import annotations

from typing import Any

__all__ = ["indexes_read"]


def indexes_read(plan: dict[str, Any]) -> set[str]:
    """The indexes a plan node and the nodes under it read."""
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= indexes_read(child)
    return found
