"""Spec 001: the Baccarat platform's wallet payout, md5(KEY&k=v&...) and its answer codes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from ingress.bodies import parse_json_object
from ingress.protocols.aigame_payout import AigamePayout
from ingress.verdicts import Verdict
from schema.errors import ConfigError
from schema.outcomes import Outcome, OutcomeReport
from tests.factories import provider
from tests.json_callbacks import answer_body, refusal, verified
from tests.signing import aigame_payout_body

KEY = "merchant-key"

# The spec's request example, with its own sign replaced: the spec's key is not published.
SPEC_EXAMPLE: dict[str, object] = {
    "agent_id": "agent001",
    "user_id": "testUid03",
    "game_id": "101",
    "inst_id": "000002",
    "shoe_id": 10231,
    "round_id": 41,
    "bet_txn_id": "67453d0c23c36d2571d40817",
    "win_amount": "100",
    "pay_out_time": 1732589121000,
    "currency": "VND2",
    "timestamp": 1732589849000,
}


def protocol(**overrides: Any) -> AigamePayout:
    values = {"amount_decimal_places": 2, **overrides}
    return AigamePayout(provider("aigame_payout", **values), {"TEST_SECRET": KEY})


def fresh(**overrides: object) -> dict[str, object]:
    return {**SPEC_EXAMPLE, "timestamp": int(time.time() * 1000), **overrides}


def verify(body: dict[str, object], proto: AigamePayout | None = None) -> Any:
    return verified(proto or protocol(), body)


def verdict_of(body: dict[str, object], proto: AigamePayout | None = None) -> Verdict:
    return refusal(proto or protocol(), body)


def test_signature_is_md5_of_key_ampersand_sorted_pairs() -> None:
    # Written out by hand from the interface description, independently of both signers.
    text = (
        "k&agent_id=agent001&bet_txn_id=67453d0c23c36d2571d40817&currency=VND2&game_id=101"
        "&inst_id=000002&pay_out_time=1732589121000&round_id=41&shoe_id=10231"
        "&timestamp=1732589849000&user_id=testUid03&win_amount=100"
    )
    assert aigame_payout_body(SPEC_EXAMPLE, "k")["sign"] == hashlib.md5(text.encode()).hexdigest()


def test_spec_example_fields_make_a_claim_for_the_bet_order() -> None:
    claim = verify(aigame_payout_body(fresh(), KEY))
    assert (claim.transaction_id, claim.user_id, claim.amount, claim.currency) == (
        "67453d0c23c36d2571d40817",
        "testUid03",
        Decimal(100),
        "VND2",
    )
    assert claim.order_id == "67453d0c23c36d2571d40817"
    assert claim.may_record_new
    assert claim.attributes["shoe_id"] == "10231"


def test_numbers_are_signed_as_their_json_text() -> None:
    body = aigame_payout_body(fresh(win_amount="12.50"), KEY)
    raw = json.dumps(body).replace('"12.50"', "12.50")  # the same value sent as a number
    claim = protocol().verify(parse_json_object(raw.encode()))
    assert claim.amount == Decimal("12.50")


def test_empty_fields_are_left_out_of_the_signature() -> None:
    body = aigame_payout_body(fresh(extra=""), KEY)
    assert verify(body).transaction_id == SPEC_EXAMPLE["bet_txn_id"]


def test_fields_the_spec_does_not_list_are_signed_too() -> None:
    body = aigame_payout_body(fresh(), KEY)
    body["table_note"] = "added after signing"
    assert verdict_of(body) is Verdict.BAD_SIGNATURE


def test_hex_case_does_not_matter() -> None:
    body = aigame_payout_body(fresh(), KEY)
    body["sign"] = str(body["sign"]).upper()
    assert verify(body).signature == str(body["sign"]).lower()


def test_key_param_last_scheme_when_configured() -> None:
    fields = fresh()
    pairs = "&".join(
        f"{name}={json.dumps(v) if not isinstance(v, str) else v}"
        for name, v in sorted(fields.items())
    )
    body = {**fields, "sign": hashlib.md5(f"{pairs}&key={KEY}".encode()).hexdigest()}
    assert verify(body, protocol(signature_scheme="key_param_last")).user_id == "testUid03"
    assert verdict_of(body) is Verdict.BAD_SIGNATURE


def test_a_wrong_key_is_a_signature_error() -> None:
    assert verdict_of(aigame_payout_body(fresh(), "other")) is Verdict.BAD_SIGNATURE
    answer = answer_body(protocol().answer(Verdict.BAD_SIGNATURE))
    assert answer == {"code": 600100, "message": "Signature error", "data": {}}


@pytest.mark.parametrize("missing", ["user_id", "bet_txn_id", "win_amount", "currency", "sign"])
def test_a_missing_field_is_a_parameter_error(missing: str) -> None:
    body = aigame_payout_body(fresh(), KEY)
    del body[missing]
    assert verdict_of(body) is Verdict.MALFORMED
    assert answer_body(protocol().answer(Verdict.MALFORMED))["code"] == 408000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("win_amount", "-5"),
        ("win_amount", "1e2"),
        ("win_amount", "1.005"),
        ("win_amount", "abc"),
        ("shoe_id", "ten"),
        ("shoe_id", -1),
        ("user_id", "a\u202eb"),
        ("user_id", ["nested"]),
        ("round_id", True),
    ],
)
def test_correctly_signed_but_malformed_fields_are_parameter_errors(
    field: str, value: object
) -> None:
    assert verdict_of(aigame_payout_body(fresh(**{field: value}), KEY)) is Verdict.MALFORMED


def test_a_win_of_zero_settles_a_lost_bet() -> None:
    assert verify(aigame_payout_body(fresh(win_amount="0"), KEY)).amount == 0


def test_a_currency_not_enabled_is_currency_does_not_exist() -> None:
    proto = protocol(allowed_currencies=("VND",))
    assert verdict_of(aigame_payout_body(fresh(), KEY), proto) is Verdict.UNKNOWN_CURRENCY
    assert answer_body(proto.answer(Verdict.UNKNOWN_CURRENCY)) == {
        "code": 800102,
        "message": "Currency does not exist",
        "data": {},
    }


@pytest.mark.parametrize("age_seconds", [601, -601, 86_400])
def test_a_timestamp_outside_ten_minutes_may_only_settle_a_recorded_order(
    age_seconds: int,
) -> None:
    stale = int((time.time() - age_seconds) * 1000)
    claim = verify(aigame_payout_body(fresh(timestamp=stale), KEY))
    assert not claim.may_record_new


def test_a_timestamp_within_ten_minutes_may_start_a_transaction() -> None:
    recent = int((time.time() - 590) * 1000)
    assert verify(aigame_payout_body(fresh(timestamp=recent), KEY)).may_record_new


def report(outcome: Outcome, balance: str | None = None) -> OutcomeReport:
    return OutcomeReport(
        event_id=uuid.uuid4(),
        outcome=outcome,
        balance=Decimal(balance) if balance is not None else None,
    )


def answer_to(outcome: Outcome, balance: str | None = None) -> Any:
    """The answer to a fresh spec example once the worker reports `outcome` and `balance`."""
    proto = protocol()
    claim = verify(aigame_payout_body(fresh(), KEY), proto)
    return answer_body(proto.answer_outcome(claim, report(outcome, balance)))


def test_success_answers_the_balance_after_the_payout_as_in_the_spec_example() -> None:
    answer = answer_to(Outcome.CREDITED, "1282.66")
    assert answer == {
        "code": 200,
        "message": "success",
        "data": {"balance": "1282.66", "currency": "VND2"},
    }


def test_balance_is_written_with_the_instance_decimal_places() -> None:
    answer = answer_to(Outcome.DUPLICATE, "1282.6")
    assert answer["data"]["balance"] == "1282.60"


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        (Outcome.HELD_UNKNOWN_ACCOUNT, 800101, "Member does not exist"),
        (Outcome.ORDER_NOT_FOUND, 800107, "Order ID does not exist"),
        (Outcome.ORDER_MISMATCH, 800107, "Order ID does not exist"),
        (Outcome.CONFLICT, 800109, "Payout failure"),
        (Outcome.SIGNATURE_REUSED, 800109, "Payout failure"),
        (Outcome.EXPIRED, 408000, "Parameter error"),
    ],
)
def test_each_refusing_outcome_has_its_spec_code(outcome: Outcome, code: int, message: str) -> None:
    answer = answer_to(outcome)
    assert answer == {"code": code, "message": message, "data": {}}


def test_try_again_is_service_exception() -> None:
    assert answer_body(protocol().answer(Verdict.TRY_AGAIN))["code"] == 800100


def test_settings_it_does_not_use_are_refused() -> None:
    with pytest.raises(ConfigError, match="signature_scheme 'sha1'"):
        protocol(signature_scheme="sha1")


def test_a_balance_finer_than_the_instance_places_is_written_exactly() -> None:
    answer = answer_to(Outcome.CREDITED, "1282.665")
    assert answer["data"]["balance"] == "1282.665"


def test_a_settled_order_resent_with_other_content_is_answered_as_settled() -> None:
    answer = answer_to(Outcome.CONFLICT, "70")
    assert answer == {
        "code": 200,
        "message": "success",
        "data": {"balance": "70.00", "currency": "VND2"},
    }


def test_default_currency_is_refused_because_the_platform_sends_one() -> None:
    with pytest.raises(ConfigError, match="default_currency is not used"):
        protocol(default_currency="VND2")


def test_a_value_holding_an_ampersand_is_refused_as_two_fields_in_one() -> None:
    body = aigame_payout_body(fresh(user_id="testUid03&zz=1"), KEY)
    assert verdict_of(body) is Verdict.MALFORMED


@pytest.mark.parametrize("outcome", list(Outcome))
def test_operators_read_the_code_and_message_each_outcome_is_answered_with(
    outcome: Outcome,
) -> None:
    answer = answer_to(outcome)
    assert AigamePayout.outcome_answer(outcome) == (str(answer["code"]), answer["message"])
