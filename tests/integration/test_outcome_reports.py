"""Outcome reports sent with Postgres NOTIFY: a batch's reports arrive whole, only on commit, in
payloads Postgres accepts, one notification per waiting process."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from schema.outcomes import (
    OUTCOME_CHANNEL,
    Outcome,
    OutcomeReport,
    decode_reports,
    new_reply_channel,
)
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
                await send_reports(conn, [(None, report) for report in reports(5)])
                await rolled_back.rollback()
                async with conn.transaction():
                    await send_reports(conn, [(None, report) for report in sent])
            await wait_until(all_arrived, "every committed report to arrive")
        finally:
            # A connection released with a listener on it warns, and the warning fails the test.
            await listener.remove_listener(OUTCOME_CHANNEL, received)

    assert [report for payload in payloads for report in decode_reports(payload)[0]] == sent
    assert len(payloads) > 1
    assert max(len(payload.encode()) for payload in payloads) <= MAX_PAYLOAD_BYTES
    assert MAX_PAYLOAD_BYTES < POSTGRES_PAYLOAD_LIMIT


async def test_each_waiting_process_gets_one_notification_of_its_own_reports(
    pool: asyncpg.Pool,
) -> None:
    channels = [new_reply_channel() for _ in range(3)]
    received: dict[str, list[str]] = {channel: [] for channel in [*channels, OUTCOME_CHANNEL]}
    sent = reports(12)
    replies = [*channels * 3, None, None, "not a channel"]

    def on_notification(_conn: object, _pid: int, channel: str, payload: object) -> None:
        received[channel].append(str(payload))

    async def all_arrived() -> bool:
        return sum(len(payloads) for payloads in received.values()) == len(received)

    async with pool.acquire() as listener:
        for channel in received:
            await listener.add_listener(channel, on_notification)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await send_reports(conn, zip(replies, sent, strict=True))
            await wait_until(all_arrived, "one notification on each channel")
        finally:
            for channel in received:
                await listener.remove_listener(channel, on_notification)

    assert {channel: len(payloads) for channel, payloads in received.items()} == dict.fromkeys(
        received, 1
    )
    for index, channel in enumerate(channels):
        assert decode_reports(received[channel][0])[0] == sent[index:9:3]
    assert decode_reports(received[OUTCOME_CHANNEL][0])[0] == sent[9:]
