"""Outcome reports between worker and ingress: exact balances, read by an ingress of another
release during a rolling upgrade, and grouped into notifications per waiting process."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from decimal import Decimal

import pytest

from schema.outcomes import (
    OUTCOME_CHANNEL,
    REPLY_CHANNEL_PREFIX,
    Outcome,
    OutcomeReport,
    decode_reports,
    encode_reports,
    new_reply_channel,
    report_channel,
)
from workers.outcome_reports import MAX_PAYLOAD_BYTES, notifications

# What Postgres takes as a channel name unquoted, and its limit on identifiers.
PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
POSTGRES_IDENTIFIER_BYTES = 63


def report(outcome: Outcome = Outcome.CREDITED) -> OutcomeReport:
    return OutcomeReport(
        event_id=uuid.uuid4(),
        outcome=outcome,
        balance=Decimal("98765432109876543210.0123456789"),
        currency="COIN",
    )


def test_a_report_round_trips_with_its_balance_exact() -> None:
    report = OutcomeReport(
        event_id=uuid.uuid4(),
        outcome=Outcome.CREDITED,
        balance=Decimal("12345678901234567890.123456789"),
        currency="COIN",
    )
    encoded = encode_reports([report])
    assert json.loads(encoded)[0]["balance"] == "12345678901234567890.123456789"
    assert decode_reports(encoded) == ([report], [])


def test_empty_fields_are_left_out_so_an_older_reader_never_meets_them() -> None:
    report = OutcomeReport(event_id=uuid.uuid4(), outcome=Outcome.EXPIRED)
    assert json.loads(encode_reports([report])) == [
        {"event_id": str(report.event_id), "outcome": "expired"}
    ]


def test_a_field_from_a_newer_worker_is_ignored_by_an_older_ingress() -> None:
    event_id = uuid.uuid4()
    payload = json.dumps(
        [
            {
                "event_id": str(event_id),
                "outcome": "credited",
                "balance": "7.50",
                "currency": "COIN",
                "field_of_a_later_release": {"any": "value"},
            }
        ]
    )
    assert decode_reports(payload) == (
        [
            OutcomeReport(
                event_id=event_id,
                outcome=Outcome.CREDITED,
                balance=Decimal("7.50"),
                currency="COIN",
            )
        ],
        [],
    )


def test_a_report_from_an_older_worker_without_a_currency_is_read() -> None:
    event_id = uuid.uuid4()
    payload = json.dumps([{"event_id": str(event_id), "outcome": "duplicate", "balance": "1"}])
    ((report,), unreadable) = decode_reports(payload)
    assert (report.outcome, report.balance, report.currency, unreadable) == (
        Outcome.DUPLICATE,
        Decimal(1),
        None,
        [],
    )


def test_a_report_that_cannot_be_read_costs_only_its_own_answer() -> None:
    readable = [OutcomeReport(event_id=uuid.uuid4(), outcome=Outcome.CREDITED) for _ in range(2)]
    elements = json.loads(encode_reports(readable))
    elements.insert(1, {"event_id": str(uuid.uuid4()), "outcome": "an outcome of a later release"})
    elements.append({"outcome": "credited"})
    reports, unreadable = decode_reports(json.dumps(elements))
    assert reports == readable
    assert len(unreadable) == 2
    assert "outcome" in unreadable[0]
    assert "event_id" in unreadable[1]


def test_a_number_in_a_report_is_read_exactly() -> None:
    event_id = uuid.uuid4()
    balance = "1.234567890123456789"  # past a float's 17 digits
    payload = f'[{{"event_id": "{event_id}", "outcome": "credited", "balance": {balance}}}]'
    ((report,), _) = decode_reports(payload)
    assert report.balance == Decimal(balance)


@pytest.mark.parametrize("payload", ["not json", "{}", '"a string"', "null"])
def test_a_payload_that_is_not_a_list_is_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="not an outcome report list"):
        decode_reports(payload)


def test_each_process_gets_a_channel_of_its_own_that_postgres_takes_as_it_is() -> None:
    channels = {new_reply_channel() for _ in range(100)}
    assert len(channels) == 100
    for channel in channels:
        assert channel.startswith(REPLY_CHANNEL_PREFIX)
        assert PLAIN_IDENTIFIER.fullmatch(channel)
        assert len(channel.encode()) < POSTGRES_IDENTIFIER_BYTES - 10
        assert report_channel(channel) == channel


@pytest.mark.parametrize(
    "reply_to",
    [
        None,
        "",
        OUTCOME_CHANNEL,
        "amq.rabbitmq.reply-to.g1h2AA",
        f"{REPLY_CHANNEL_PREFIX}{'0' * 31}",
        f"{REPLY_CHANNEL_PREFIX}{'A' * 32}",
        f"{REPLY_CHANNEL_PREFIX}{'0' * 100}",
        f"{new_reply_channel()}; NOTIFY x",
    ],
)
def test_a_message_without_a_reply_channel_is_reported_on_the_shared_one(
    reply_to: str | None,
) -> None:
    assert report_channel(reply_to) == OUTCOME_CHANNEL


def test_a_commits_reports_make_one_notification_per_waiting_process() -> None:
    first, second = new_reply_channel(), new_reply_channel()
    reports = [report() for _ in range(6)]
    replies = [first, second, None, first, second, first]
    sent = notifications(zip(replies, reports, strict=True))
    assert [channel for channel, _ in sent] == [first, second, OUTCOME_CHANNEL]
    assert [decode_reports(payload)[0] for _, payload in sent] == [
        [reports[0], reports[3], reports[5]],
        [reports[1], reports[4]],
        [reports[2]],
    ]


def test_a_process_with_more_reports_than_fit_gets_as_few_notifications_as_fit() -> None:
    busy, quiet = new_reply_channel(), new_reply_channel()
    reports = [report() for _ in range(300)]  # about 30 kB
    sent = notifications([(busy, r) for r in reports] + [(quiet, report())])
    payloads = [payload for channel, payload in sent if channel == busy]
    assert [channel for channel, _ in sent].count(quiet) == 1
    assert [r for payload in payloads for r in decode_reports(payload)[0]] == reports
    assert max(len(payload.encode()) for payload in payloads) <= MAX_PAYLOAD_BYTES
    for payload, following in itertools.pairwise(payloads):
        # The next notification's first report would not have fit in this one.
        first_size = len(encode_reports(decode_reports(following)[0][:1]).encode()) - 1
        assert len(payload.encode()) + first_size > MAX_PAYLOAD_BYTES


def test_no_reports_make_no_notification() -> None:
    assert notifications([]) == []
