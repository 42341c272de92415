"""The envelope contract: strict about its own shape, lenient about one bad event inside it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from schema.envelopes import (
    MAX_EVENTS_PER_ENVELOPE,
    decode_envelope,
    encode_envelope,
)
from schema.errors import ContractError
from schema.events import decode_event, encode_event
from tests.factories import INVALID_EVENT_FIELDS, payout_event


def test_round_trip_keeps_every_event_and_its_order_exact() -> None:
    events = [payout_event(amount=Decimal("12345678901234567.10")), payout_event()]
    decoded = decode_envelope(encode_envelope(events))
    assert [enclosed.event for enclosed in decoded] == events
    assert json.loads(encode_envelope(events))["events"][0]["amount"] == "12345678901234567.10"


def test_an_enclosed_event_becomes_the_single_event_message_it_would_have_been() -> None:
    payout = payout_event()
    (enclosed,) = decode_envelope(encode_envelope([payout]))
    assert enclosed.single_body() == encode_event(payout)
    assert decode_event(enclosed.single_body()) == payout


def envelope_with(*events: object) -> bytes:
    return json.dumps({"envelope_version": 1, "events": list(events)}).encode()


def test_an_event_that_breaks_the_event_contract_is_poison_alone() -> None:
    good = payout_event()
    bad = json.loads(encode_event(payout_event()))
    bad["amount"] = 0.1  # went through a float
    first, second = decode_envelope(envelope_with(bad, json.loads(encode_event(good))))
    assert first.event is None
    assert first.error is not None
    assert "decimal string" in str(first.error)
    assert json.loads(first.single_body()) == bad
    assert (second.event, second.error) == (good, None)


@pytest.mark.parametrize(("key", "value"), INVALID_EVENT_FIELDS)
def test_an_enclosed_event_is_held_to_the_event_contract(key: str, value: object) -> None:
    bad = json.loads(encode_event(payout_event()))
    bad[key] = value
    (enclosed,) = decode_envelope(envelope_with(bad))
    assert enclosed.event is None
    assert isinstance(enclosed.error, ContractError)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"events": [{}]}',
        b'{"envelope_version": 2, "events": [{}]}',
        b'{"envelope_version": 1, "events": []}',
        b'{"envelope_version": 1, "events": [1, {}]}',
        b'{"envelope_version": 1, "events": {}}',
        b'{"envelope_version": 1, "events": [{}], "extra": 1}',
    ],
)
def test_a_malformed_envelope_is_poison_as_a_whole(body: bytes) -> None:
    with pytest.raises(ContractError, match="not a payout envelope"):
        decode_envelope(body)


def test_an_envelope_holds_a_bounded_number_of_events() -> None:
    with pytest.raises(ContractError):
        decode_envelope(envelope_with(*([{}] * (MAX_EVENTS_PER_ENVELOPE + 1))))
    with pytest.raises(ValueError, match="1 to"):
        encode_envelope([])
