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
    assert decode_reports(encoded) == [report]


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
    assert decode_reports(payload) == [
        OutcomeReport(
            event_id=event_id, outcome=Outcome.CREDITED, balance=Decimal("7.50"), currency="COIN"
        )
    ]


def test_a_report_from_an_older_worker_without_a_currency_is_read() -> None:
    event_id = uuid.uuid4()
    payload = json.dumps([{"event_id": str(event_id), "outcome": "duplicate", "balance": "1"}])
    (report,) = decode_reports(payload)
    assert (report.outcome, report.balance, report.currency) == (
        Outcome.DUPLICATE,
        Decimal(1),
        None,
    )


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "{}",
        '[{"outcome": "credited"}]',
        '[{"event_id": "not-a-uuid", "outcome": "credited"}]',
        f'[{{"event_id": "{uuid.uuid4()}", "outcome": "an outcome no release knows"}}]',
    ],
)
def test_a_payload_that_is_not_a_report_list_is_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="not an outcome report list"):
        decode_reports(payload)
