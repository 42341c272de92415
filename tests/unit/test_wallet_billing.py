"""Spec 004: the wallet's billing callback, md5(txnid . userid . ... . addinfo . secret_key)."""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from ingress.bodies import parse_json_object
from ingress.protocols.wallet_billing import WalletBilling
from ingress.verdicts import Verdict
from schema.errors import ConfigError
from schema.outcomes import Outcome, OutcomeReport
from tests.factories import provider
from tests.json_callbacks import answer_body, refusal, verified
from tests.signing import wallet_billing_body

SECRET = "wallet-secret"
FIELDS: dict[str, object] = {
    "txnid": "W-1001",
    "userid": "player-7",
    "gameid": "g1",
    "serverid": "s2",
    "items": "gem_pack_100",
    "amount": 20000,
    "apptxnid": "APP-55",
    "addinfo": "promo",
}


def protocol(**overrides: Any) -> WalletBilling:
    values = {"default_currency": "VND", **overrides}
    return WalletBilling(provider("wallet_billing", **values), {"TEST_SECRET": SECRET})


def verify(body: dict[str, object], proto: WalletBilling | None = None) -> Any:
    return verified(proto or protocol(), body)


def verdict_of(body: dict[str, object], proto: WalletBilling | None = None) -> Verdict:
    return refusal(proto or protocol(), body)


def test_sig_is_md5_of_the_values_in_spec_order_then_the_key() -> None:
    text = "W-1001player-7g1s2gem_pack_10020000APP-55promo" + SECRET
    assert wallet_billing_body(FIELDS, SECRET)["sig"] == hashlib.md5(text.encode()).hexdigest()


def test_a_callback_grants_its_item_and_records_the_amount_paid() -> None:
    claim = verify(wallet_billing_body(FIELDS, SECRET))
    assert claim.transaction_id == "W-1001"
    assert claim.user_id == "player-7"
    assert claim.items == ("gem_pack_100",)
    assert claim.price == Decimal(20000)
    assert claim.amount == 0  # the user paid; the wallet is not credited
    assert claim.currency == "VND"
    assert claim.order_id == "APP-55"
    assert claim.attributes == {"gameid": "g1", "serverid": "s2", "addinfo": "promo"}


def test_absent_and_null_fields_sign_as_empty_strings() -> None:
    fields = {**FIELDS, "addinfo": None}
    del fields["serverid"]
    body = wallet_billing_body(fields, SECRET)
    text = "W-1001player-7g1gem_pack_10020000APP-55" + SECRET
    assert body["sig"] == hashlib.md5(text.encode()).hexdigest()
    assert verify(body).attributes == {"gameid": "g1"}


def test_numbers_sign_as_their_json_text() -> None:
    body = wallet_billing_body({**FIELDS, "amount": "20000.50"}, SECRET)
    raw = json.dumps(body).replace('"20000.50"', "20000.50")
    claim = protocol(amount_decimal_places=2).verify(parse_json_object(raw.encode()))
    assert claim.price == Decimal("20000.50")


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    assert verdict_of(wallet_billing_body(FIELDS, "other")) is Verdict.BAD_SIGNATURE
    assert answer_body(protocol().answer(Verdict.BAD_SIGNATURE)) == {
        "resultCode": 3,
        "resultMessage": "Invalid signature",
    }


@pytest.mark.parametrize("missing", ["txnid", "userid", "items", "amount", "sig"])
def test_a_missing_required_field_is_invalid_parameters(missing: str) -> None:
    body = wallet_billing_body(FIELDS, SECRET)
    del body[missing]
    assert verdict_of(body) is Verdict.MALFORMED
    assert answer_body(protocol().answer(Verdict.MALFORMED))["resultCode"] == 4


def test_apptxnid_is_required_when_orders_are_verified() -> None:
    fields = dict(FIELDS)
    del fields["apptxnid"]
    proto = protocol(verify_orders=True)
    assert verdict_of(wallet_billing_body(fields, SECRET), proto) is Verdict.MALFORMED
    assert verify(wallet_billing_body(fields, SECRET)).order_id is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "-1"), ("amount", "ten"), ("items", {"id": 1}), ("userid", "a\nb")],
)
def test_correctly_signed_but_malformed_fields_are_invalid_parameters(
    field: str, value: object
) -> None:
    assert verdict_of(wallet_billing_body({**FIELDS, field: value}, SECRET)) is Verdict.MALFORMED


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome.CREDITED, 1),
        (Outcome.DUPLICATE, 2),
        (Outcome.ORDER_NOT_FOUND, 5),
        (Outcome.ORDER_MISMATCH, 6),
        (Outcome.HELD_UNKNOWN_ACCOUNT, 7),
        (Outcome.CONFLICT, 8),
        (Outcome.SIGNATURE_REUSED, 8),
    ],
)
def test_each_outcome_has_its_result_code(outcome: Outcome, code: int) -> None:
    proto = protocol()
    claim = verify(wallet_billing_body(FIELDS, SECRET), proto)
    result = answer_body(
        proto.answer_outcome(claim, OutcomeReport(event_id=uuid.uuid4(), outcome=outcome))
    )
    assert result["resultCode"] == code
    assert result["resultMessage"]


def test_spec_codes_keep_their_spec_words() -> None:
    proto = protocol()
    claim = verify(wallet_billing_body(FIELDS, SECRET), proto)
    duplicate = OutcomeReport(event_id=uuid.uuid4(), outcome=Outcome.DUPLICATE)
    assert answer_body(proto.answer_outcome(claim, duplicate)) == {
        "resultCode": 2,
        "resultMessage": "Transaction Duplicate",
    }


def test_try_again_has_its_own_code() -> None:
    assert answer_body(protocol().answer(Verdict.TRY_AGAIN))["resultCode"] == 9


def test_default_currency_is_required() -> None:
    with pytest.raises(ConfigError, match="default_currency is required"):
        WalletBilling(provider("wallet_billing"), {"TEST_SECRET": SECRET})


def test_a_purchase_cannot_wait_for_its_user_so_require_existing_is_refused() -> None:
    with pytest.raises(ConfigError, match='account_policy must be "create"'):
        protocol(account_policy="require_existing")


def test_the_stored_success_code_is_this_protocols_own() -> None:
    assert protocol().accepted_answer_code == "1"


def test_field_formats_narrow_the_free_fields() -> None:
    proto = protocol(field_formats={"serverid": {"regex": "s[0-9]"}})
    assert verify(wallet_billing_body(FIELDS, SECRET), proto).attributes["serverid"] == "s2"
    shifted = {**FIELDS, "serverid": "s2g", "items": "em_pack_100"}
    assert verdict_of(wallet_billing_body(shifted, SECRET), proto) is Verdict.MALFORMED


@pytest.mark.parametrize("outcome", list(Outcome))
def test_operators_read_the_code_and_message_each_outcome_is_answered_with(
    outcome: Outcome,
) -> None:
    proto = protocol()
    claim = verify(wallet_billing_body(FIELDS, SECRET), proto)
    report = OutcomeReport(event_id=uuid.uuid4(), outcome=outcome)
    result = answer_body(proto.answer_outcome(claim, report))
    expected = (str(result["resultCode"]), result["resultMessage"])
    assert WalletBilling.outcome_answer(outcome) == expected
