"""Outcome reports between worker and ingress: exact balances, and read by an ingress of another
release during a rolling upgrade."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from schema.outcomes import Outcome, OutcomeReport, decode_reports, encode_reports


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
