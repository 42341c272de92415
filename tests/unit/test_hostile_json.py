"""Property-based, for the JSON protocols (specs 001 and 004): whatever body arrives, the answer
is a Rejection or a correctly signed Claim that makes a valid payout event. Never another
exception (which the ingress would turn into "try again" for ever), never an unsigned claim."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.bodies import parse_json_object
from ingress.claimed_events import claimed_event
from ingress.protocols.aigame_payout import AigamePayout
from ingress.protocols.wallet_billing import WalletBilling
from ingress.verdicts import Rejection, Verdict
from schema.events import RawRequest
from tests.factories import provider
from tests.signing import aigame_payout_body, wallet_billing_body

if TYPE_CHECKING:
    from ingress.protocols.base import Claim

KEY = "hostile-key"
MAX_AMOUNT = Decimal(100000)
AIGAME = AigamePayout(
    provider("aigame_payout", amount_decimal_places=2, verify_orders=True),
    {"TEST_SECRET": KEY},
)
BILLING = WalletBilling(
    provider("wallet_billing", default_currency="VND", verify_orders=True),
    {"TEST_SECRET": KEY},
)
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.text(st.characters(codec=None, categories=["Cs", "Cc", "Lo"]), max_size=4)
    | st.sampled_from(["0", "1", "1.5", "-1", "1e3", "007", " 5", "100.00", "\u0000", "\ud800"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
    max_leaves=8,
)


def attempt(protocol: AigamePayout | WalletBilling, body: bytes) -> Claim | Rejection:
    """The claim, or the Rejection raised; any other exception fails the test."""
    try:
        return protocol.verify(parse_json_object(body))
    except Rejection as rejection:
        return rejection


RAW_REQUEST = RawRequest(method="POST", path="/", query_string="", client_ip="::1")


def carried_fields_oracle(claim: Claim) -> dict[str, object]:
    """The event fields a claim carries unchanged (these protocols hash no device ids).

    A test oracle, written apart from `ingress.claimed_events` on purpose: compared with what
    that builder makes, it catches a field dropped or altered on the way to the event, which a
    test using the builder alone could not."""
    return {
        "transaction_id": claim.transaction_id,
        "user_id": claim.user_id,
        "amount": claim.amount,
        "currency": claim.currency,
        "items": claim.items,
        "price": claim.price,
        "order_id": claim.order_id,
        "may_record_new": claim.may_record_new,
        "signature": claim.signature,
        "attributes": claim.attributes,
    }


def verdict_of(outcome: Claim | Rejection) -> Verdict | None:
    return outcome.verdict if isinstance(outcome, Rejection) else None


def as_sent(value: object) -> str:
    """A field's text as the provider signed it: strings as they are, numbers as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def assert_sane(protocol: AigamePayout | WalletBilling, claim: Claim) -> None:
    for amount in (claim.amount, claim.price):
        if amount is not None:
            assert amount.is_finite()
            assert Decimal(0) <= amount <= MAX_AMOUNT
    # What the ingress publishes for it: it must always validate, and carry the claim.
    event = claimed_event(protocol, claim, RAW_REQUEST, uuid.uuid4())
    oracle = carried_fields_oracle(claim)
    assert {name: getattr(event, name) for name in oracle} == oracle


@PROPERTY_SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_parse_to_an_object_or_are_malformed(raw: bytes) -> None:
    outcome: object
    try:
        outcome = parse_json_object(raw)
    except Rejection as rejection:
        outcome = rejection.verdict
    assert outcome is Verdict.MALFORMED or isinstance(outcome, dict)


@PROPERTY_SETTINGS
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=14))
def test_unsigned_bodies_are_never_claims(body: dict[str, Any]) -> None:
    for protocol in (AIGAME, BILLING):
        assert isinstance(attempt(protocol, json.dumps(body).encode()), Rejection)


# Mostly plausible values, so that many examples get past the signature and into the checks.
plausible_text = st.text(max_size=20) | st.integers(min_value=0, max_value=10**6)
plausible_integer = st.integers(min_value=-5, max_value=10**20) | st.text(max_size=8)
plausible_amount = (
    st.decimals(min_value=-10, max_value=10**6, allow_nan=False, places=3).map(str) | scalars
)
aigame_fields = st.fixed_dictionaries(
    {
        **{
            name: plausible_text | json_values
            for name in ("agent_id", "user_id", "game_id", "inst_id", "bet_txn_id", "currency")
        },
        **{
            name: plausible_integer | json_values
            for name in ("shoe_id", "round_id", "pay_out_time", "timestamp")
        },
        "win_amount": plausible_amount,
    },
    optional={"extra": json_values},
)


@PROPERTY_SETTINGS
@given(aigame_fields)
def test_aigame_correctly_signed_hostile_values(fields: dict[str, Any]) -> None:
    try:
        body = json.dumps(aigame_payout_body(fields, KEY)).encode()
    except (TypeError, ValueError):
        return  # the platform could not have signed nested values either
    outcome = attempt(AIGAME, body)
    if isinstance(outcome, Rejection):
        assert outcome.verdict in (Verdict.MALFORMED, Verdict.BAD_SIGNATURE)
        return
    assert outcome.transaction_id == as_sent(fields["bet_txn_id"])
    assert outcome.amount == Decimal(as_sent(fields["win_amount"]))
    assert_sane(AIGAME, outcome)


billing_fields = st.fixed_dictionaries(
    {
        **{name: plausible_text | json_values for name in ("txnid", "userid", "items", "apptxnid")},
        "amount": plausible_amount,
    },
    optional={name: plausible_text | json_values for name in ("gameid", "serverid", "addinfo")},
)


@PROPERTY_SETTINGS
@given(billing_fields)
def test_billing_correctly_signed_hostile_values(fields: dict[str, Any]) -> None:
    try:
        body = json.dumps(wallet_billing_body(fields, KEY)).encode()
    except ValueError:
        return  # a lone surrogate: the wallet could not have signed it either
    outcome = attempt(BILLING, body)
    if isinstance(outcome, Rejection):
        assert outcome.verdict in (Verdict.MALFORMED, Verdict.BAD_SIGNATURE)
        return
    assert outcome.transaction_id == as_sent(fields["txnid"])
    assert outcome.items == (as_sent(fields["items"]),)
    assert_sane(BILLING, outcome)


VALID_AIGAME = aigame_payout_body(
    {
        "agent_id": "a",
        "user_id": "u",
        "game_id": "101",
        "inst_id": "1",
        "shoe_id": 1,
        "round_id": 1,
        "bet_txn_id": "b",
        "win_amount": "1",
        "pay_out_time": 1,
        "currency": "VND2",
        "timestamp": 1,
    },
    KEY,
)
VALID_BILLING = wallet_billing_body(
    {"txnid": "t", "userid": "u", "items": "i", "amount": 1, "apptxnid": "o"}, KEY
)


@PROPERTY_SETTINGS
@given(st.data())
def test_any_field_of_a_well_formed_body_replaced_by_anything_is_refused_or_a_claim(
    data: st.DataObject,
) -> None:
    for protocol, valid in ((AIGAME, VALID_AIGAME), (BILLING, VALID_BILLING)):
        name = data.draw(st.sampled_from([*valid, "extra"]))
        body = {**valid, name: data.draw(json_values)}
        outcome = attempt(protocol, json.dumps(body).encode())
        if not isinstance(outcome, Rejection):
            assert_sane(protocol, outcome)


@pytest.mark.parametrize("name", [*VALID_AIGAME, "extra"])
def test_a_lone_surrogate_in_any_aigame_field_is_malformed(name: str) -> None:
    body = json.dumps({**VALID_AIGAME, name: "x\ud800"}).encode()
    assert verdict_of(attempt(AIGAME, body)) is Verdict.MALFORMED


@pytest.mark.parametrize("name", [*VALID_BILLING, "addinfo"])
def test_a_lone_surrogate_in_any_billing_field_is_malformed(name: str) -> None:
    body = json.dumps({**VALID_BILLING, name: "x\ud800"}).encode()
    assert verdict_of(attempt(BILLING, body)) is Verdict.MALFORMED
