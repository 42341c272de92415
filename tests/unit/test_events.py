"""The queue message contract: versioned, strict, and exact about money."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schema.errors import ContractError
from schema.events import PayoutEvent, RawRequest, decode_event, encode_event
from tests.factories import INVALID_EVENT_FIELDS


def event(**overrides: object) -> PayoutEvent:
    values: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "provider_instance": "ow",
        "protocol": "offerwall_md5",
        "transaction_id": "t-1",
        "user_id": "u-1",
        "amount": Decimal("0.10"),
        "currency": "COIN",
        "signature": "ab" * 16,
        "create_account": True,
        "answer_code": "200",
        "received_at": datetime.now(UTC),
        "raw_request": RawRequest(method="GET", path="/cb", query_string="a=1", client_ip="::1"),
    }
    values.update(overrides)
    return PayoutEvent.model_validate(values)


def test_round_trip_keeps_the_amount_exact_and_as_a_string() -> None:
    original = event(amount=Decimal("12345678901234567.10"))
    body = encode_event(original)
    assert json.loads(body)["amount"] == "12345678901234567.10"
    assert decode_event(body) == original


def test_numeric_amounts_are_refused_because_they_went_through_a_float() -> None:
    body = json.loads(encode_event(event()))
    body["amount"] = 0.1
    with pytest.raises(ContractError, match="decimal string"):
        decode_event(json.dumps(body).encode())


@pytest.mark.parametrize(("key", "value"), INVALID_EVENT_FIELDS)
def test_unknown_versions_and_invalid_fields_are_contract_errors(key: str, value: object) -> None:
    body = json.loads(encode_event(event()))
    body[key] = value
    with pytest.raises(ContractError):
        decode_event(json.dumps(body).encode())


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"[]", b"{}"])
def test_garbage_is_a_contract_error(body: bytes) -> None:
    with pytest.raises(ContractError):
        decode_event(body)


def test_log_fields_name_the_payout_on_either_side_of_the_queue() -> None:
    payout = event(provider_instance="ow", transaction_id="t-9")
    assert payout.log_fields() == {
        "event_id": str(payout.event_id),
        "provider_instance": "ow",
        "transaction_id": "t-9",
    }
