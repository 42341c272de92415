"""Tell each waiting ingress process what became of its events: Postgres NOTIFY on the process's
own channel, inside the crediting transaction, so a report is delivered only if, and when, the
outcome is committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schema.outcomes import encode_reports, report_channel

if TYPE_CHECKING:
    from collections.abc import Iterable

    from schema.outcomes import OutcomeReport
    from workers.database import Connection

__all__ = ["MAX_PAYLOAD_BYTES", "notifications", "send_reports"]

# Every notification of a commit in one round trip.
NOTIFY = """
SELECT pg_notify(channel, payload) FROM unnest($1::text[], $2::text[]) AS n (channel, payload)
"""
# Postgres refuses a notification payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900


def notifications(reports: Iterable[tuple[str | None, OutcomeReport]]) -> list[tuple[str, str]]:
    """(channel, payload) for reports given with the `reply_to` of their event's message: per
    channel, as few payloads as fit, each a list of reports in the order given."""
    by_channel: dict[str, list[OutcomeReport]] = {}
    for reply_to, report in reports:
        by_channel.setdefault(report_channel(reply_to), []).append(report)
    return [
        (channel, payload)
        for channel, channel_reports in by_channel.items()
        for payload in _payloads(channel_reports)
    ]


def _payloads(reports: list[OutcomeReport]) -> list[str]:
    """JSON lists of the reports in order, each filled as far as MAX_PAYLOAD_BYTES allows."""
    payloads: list[str] = []
    chunk: list[str] = []
    size = 1  # the list's brackets, less the comma its first report does not need
    for report in reports:
        encoded = encode_reports([report])[1:-1]  # one element, without the list's brackets
        encoded_size = len(encoded.encode()) + 1  # and its comma
        if chunk and size + encoded_size > MAX_PAYLOAD_BYTES:
            payloads.append(_json_list(chunk))
            chunk, size = [], 1
        chunk.append(encoded)
        size += encoded_size
    if chunk:
        payloads.append(_json_list(chunk))
    return payloads


def _json_list(elements: list[str]) -> str:
    return f"[{','.join(elements)}]"


async def send_reports(
    conn: Connection, reports: Iterable[tuple[str | None, OutcomeReport]]
) -> None:
    """Queue the reports on the caller's transaction; Postgres sends them on commit. A channel
    nobody listens on any more (its process restarted) costs nothing."""
    if sent := notifications(reports):
        await conn.execute(
            NOTIFY, [channel for channel, _ in sent], [payload for _, payload in sent]
        )
