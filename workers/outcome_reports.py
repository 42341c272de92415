"""Tell a waiting ingress what became of its events: Postgres NOTIFY inside the crediting
transaction, so a report is delivered only if, and when, the outcome is committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.outcomes import MAX_REPORT_BYTES, OUTCOME_CHANNEL, encode_reports

if TYPE_CHECKING:
    from schema.outcomes import OutcomeReport
    from workers.database import Connection

__all__ = ["send_reports"]

NOTIFY = "SELECT pg_notify($1, $2)"


async def send_reports(conn: Connection, reports: list[OutcomeReport]) -> None:
    """Queue the reports on the caller's transaction, as few notifications as fit the limit."""
    chunk: list[OutcomeReport] = []
    for report in reports:
        if chunk and len(encode_reports([*chunk, report])) > MAX_REPORT_BYTES:
            await conn.execute(NOTIFY, OUTCOME_CHANNEL, encode_reports(chunk))
            chunk = []
        chunk.append(report)
    if chunk:
        await conn.execute(NOTIFY, OUTCOME_CHANNEL, encode_reports(chunk))
