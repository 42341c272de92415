"""Tell a waiting ingress what became of its events: Postgres NOTIFY inside the crediting
transaction, so a report is delivered only if, and when, the outcome is committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.outcomes import OUTCOME_CHANNEL, encode_reports

if TYPE_CHECKING:
    from schema.outcomes import OutcomeReport
    from workers.database import Connection

__all__ = ["send_report"]

NOTIFY = "SELECT pg_notify($1, $2)"


async def send_report(conn: Connection, report: OutcomeReport) -> None:
    """Queue the report on the caller's transaction; Postgres sends it on commit."""
    await conn.execute(NOTIFY, OUTCOME_CHANNEL, encode_reports([report]))
