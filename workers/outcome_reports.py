"""Tell a waiting ingress what became of its events: Postgres NOTIFY inside the crediting
transaction, so a report is delivered only if, and when, the outcome is committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.outcomes import OUTCOME_CHANNEL, encode_reports

if TYPE_CHECKING:
    from schema.outcomes import OutcomeReport
    from workers.database import Connection

__all__ = ["MAX_PAYLOAD_BYTES", "send_reports"]

NOTIFY = "SELECT pg_notify($1, $2)"
# Postgres refuses a notification payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900


async def send_reports(conn: Connection, reports: list[OutcomeReport]) -> None:
    """Queue the reports on the caller's transaction, as few notifications as fit; Postgres
    sends them on commit."""
    chunk: list[OutcomeReport] = []
    size = 2  # the list's brackets
    for report in reports:
        # Its size inside a list: its own encoding without the brackets, plus a comma.
        report_size = len(encode_reports([report]).encode()) - 1
        if chunk and size + report_size > MAX_PAYLOAD_BYTES:
            await conn.execute(NOTIFY, OUTCOME_CHANNEL, encode_reports(chunk))
            chunk, size = [], 2
        chunk.append(report)
        size += report_size
    if chunk:
        await conn.execute(NOTIFY, OUTCOME_CHANNEL, encode_reports(chunk))
