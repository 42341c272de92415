"""Outcome reports sent with Postgres NOTIFY: a batch's reports arrive whole, only on commit, in
payloads Postgres accepts."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from schema.outcomes import OUTCOME_CHANNEL, Outcome, OutcomeReport, decode_reports
from tests.polling import wait_until
from workers.outcome_reports import MAX_PAYLOAD_BYTES, send_reports

if TYPE_CHECKING:
    import asyncpg

# Postgres's own limit, which MAX_PAYLOAD_BYTES keeps under.
POSTGRES_PAYLOAD_LIMIT = 8000


def reports(count: int) -> list[OutcomeReport]:
    return [
        OutcomeReport(
            event_id=uuid.uuid4(),
            outcome=Outcome.CREDITED,
            balance=Decimal("98765432109876543210.0123456789"),
            currency="COIN",
        )
        for _ in range(count)
    ]


async def test_a_batchs_reports_arrive_whole_and_only_on_commit(pool: asyncpg.Pool) -> None:
    payloads: list[str] = []
    sent = reports(300)  # about 30 kB: several notifications

    def received(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        payloads.append(str(payload))

    async def all_arrived() -> bool:
        return sum(len(decode_reports(payload)[0]) for payload in payloads) >= len(sent)

    async with pool.acquire() as listener:
        await listener.add_listener(OUTCOME_CHANNEL, received)
        try:
            async with pool.acquire() as conn:
                rolled_back = conn.transaction()
                await rolled_back.start()
                await send_reports(conn, reports(5))
                await rolled_back.rollback()
                async with conn.transaction():
                    await send_reports(conn, sent)
            await wait_until(all_arrived, "every committed report to arrive")
        finally:
            # A connection released with a listener on it warns, and the warning fails the test.
            await listener.remove_listener(OUTCOME_CHANNEL, received)

    assert [report for payload in payloads for report in decode_reports(payload)[0]] == sent
    assert len(payloads) > 1
    assert max(len(payload.encode()) for payload in payloads) <= MAX_PAYLOAD_BYTES
    assert MAX_PAYLOAD_BYTES < POSTGRES_PAYLOAD_LIMIT
