"""Spec 003: sid = sha1(trans_uuid + user_uuid + currency + coin_amount + device_id +
sdk_app_id + s2s_token), absent optionals contributing the empty string."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest

from ingress.protocols.adjoe import Adjoe
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError
from tests.factories import provider
from tests.signing import adjoe_query

TOKEN = "s3cret"
TRANS_UUID = "9f1c2a4e-8b3d-4f6a-9c2e-1d5b7a8e3f40"
MANDATORY = {
    "user_uuid": "user-42",
    "coin_amount": "150",
    "currency": "coins",
    "trans_uuid": TRANS_UUID,
}


def protocol(**overrides: object) -> Adjoe:
    return Adjoe(provider("adjoe", **overrides), {"TEST_SECRET": TOKEN})


def verdict_of(query: str, proto: Adjoe | None = None) -> Verdict:
    with pytest.raises(Rejection) as raised:
        (proto or protocol()).verify(parse_query(query.encode()))
    return raised.value.verdict


def test_vector_with_absent_optionals_contributing_empty_strings() -> None:
    query = (
        "&".join(f"{k}={v}" for k, v in MANDATORY.items())
        + "&sid=6c16aa72ba9e27381598299bf6612c8b74cd8ccb"
    )
    claim = protocol().verify(parse_query(query.encode()))
    assert (claim.transaction_id, claim.user_id, claim.amount, claim.currency) == (
        TRANS_UUID,
        "user-42",
        Decimal(150),
        "coins",
    )


def test_vector_with_device_id_and_sdk_app_id() -> None:
    query = (
        "&".join(f"{k}={v}" for k, v in MANDATORY.items())
        + "&device_id=dev-1&sdk_app_id=app-7&sid=14746063d6c6e31d3ae9307206ceb84e73bff784"
    )
    claim = protocol().verify(parse_query(query.encode()))
    assert claim.attributes == {"device_id": "dev-1", "sdk_app_id": "app-7"}


def test_uppercase_sid_and_uuid_are_accepted_and_the_uuid_normalized() -> None:
    params = {**MANDATORY, "trans_uuid": TRANS_UUID.upper()}
    query = adjoe_query(params, TOKEN)
    sid = parse_query(query.encode())["sid"]
    claim = protocol().verify(parse_query(query.replace(sid, sid.upper()).encode()))
    assert claim.transaction_id == TRANS_UUID
    assert claim.signature == sid


def test_renamed_parameters() -> None:
    renamed = protocol(parameters={"user_uuid": "uid", "sid": "signature", "trans_uuid": "tx"})
    params = {"uid": "user-42", "coin_amount": "150", "currency": "coins", "tx": TRANS_UUID}
    by_spec = {
        "user_uuid": "user-42",
        "coin_amount": "150",
        "currency": "coins",
        "trans_uuid": TRANS_UUID,
    }
    sid = parse_query(adjoe_query(by_spec, TOKEN).encode())["sid"]
    query = "&".join(f"{k}={v}" for k, v in params.items()) + f"&signature={sid}"
    assert renamed.verify(parse_query(query.encode())).user_id == "user-42"


@pytest.mark.parametrize("field", [*MANDATORY, "device_id", "sdk_app_id"])
def test_tampering_with_a_signed_field_breaks_the_sid(field: str) -> None:
    params = {**MANDATORY, "device_id": "dev-1", "sdk_app_id": "app-7"}
    signed = parse_query(adjoe_query(params, TOKEN).encode())
    signed[field] = signed[field].replace("1", "2") if "1" in signed[field] else signed[field] + "2"
    with pytest.raises(Rejection) as raised:
        protocol().verify(signed)
    assert raised.value.verdict is Verdict.BAD_SIGNATURE


def test_unsigned_optional_fields_are_outside_the_sid() -> None:
    """The spec signs six fields only; app_name and the sub ids can change without breaking it."""
    signed = parse_query(adjoe_query({**MANDATORY, "app_name": "Puzzle"}, TOKEN).encode())
    signed["app_name"] = "Other"
    assert protocol().verify(signed).attributes["app_name"] == "Other"


def test_unknown_extra_parameters_are_accepted_and_not_signed() -> None:
    query = adjoe_query(MANDATORY, TOKEN) + "&utm_source=x&placement=7"
    assert protocol().verify(parse_query(query.encode())).user_id == "user-42"


@pytest.mark.parametrize("encoded_space", ["+", "%20"])
def test_plus_and_percent_encoding_decode_to_the_signed_value(encoded_space: str) -> None:
    user = "J\u00fcrgen \u00d6"
    sid = parse_query(adjoe_query({**MANDATORY, "user_uuid": user}, TOKEN).encode())["sid"]
    sent_user = quote("J\u00fcrgen", safe="") + encoded_space + quote("\u00d6", safe="")
    query = (
        f"user_uuid={sent_user}&coin_amount=150&currency=coins&trans_uuid={TRANS_UUID}&sid={sid}"
    )
    assert protocol().verify(parse_query(query.encode())).user_id == user


def test_wrong_token_is_rejected() -> None:
    assert verdict_of(adjoe_query(MANDATORY, "other")) is Verdict.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trans_uuid", "not-a-uuid"),
        ("trans_uuid", "9f1c2a4e-8b3d-1f6a-9c2e-1d5b7a8e3f40"),  # version 1, not 4
        ("coin_amount", "1.0"),
        ("coin_amount", "-3"),
        ("coin_amount", "0"),
        ("user_uuid", "a\u202eb"),
    ],
)
def test_correctly_signed_but_malformed_fields_are_refused(field: str, value: str) -> None:
    proto = protocol(allowed_currencies=("coins",))
    assert verdict_of(adjoe_query({**MANDATORY, field: value}, TOKEN), proto) is Verdict.MALFORMED


def test_a_currency_outside_allowed_currencies_is_refused_as_unknown() -> None:
    proto = protocol(allowed_currencies=("coins",))
    query = adjoe_query({**MANDATORY, "currency": "gems"}, TOKEN)
    assert verdict_of(query, proto) is Verdict.UNKNOWN_CURRENCY
    assert proto.answer(Verdict.UNKNOWN_CURRENCY).status_code == 400


def test_missing_sid_is_malformed() -> None:
    assert verdict_of("user_uuid=u&coin_amount=1") is Verdict.MALFORMED


def test_default_currency_is_a_config_error_for_adjoe() -> None:
    with pytest.raises(ConfigError, match="allowed_currencies"):
        protocol(default_currency="COIN")


def test_during_a_rotation_either_token_verifies_and_the_claim_names_which() -> None:
    rotating = Adjoe(provider("adjoe"), {"ADJOE_CURRENT": "old", "ADJOE_NEXT": "new"})
    for token, name in (("old", "ADJOE_CURRENT"), ("new", "ADJOE_NEXT")):
        claim = rotating.verify(parse_query(adjoe_query(MANDATORY, token).encode()))
        assert claim.secret_name == name


def test_field_formats_narrow_the_free_signed_fields_only() -> None:
    proto = protocol(field_formats={"device_id": "android_id"})
    query = adjoe_query({**MANDATORY, "device_id": "9774d56d682e549c"}, TOKEN)
    assert proto.verify(parse_query(query.encode())).attributes["device_id"] == "9774d56d682e549c"
    query = adjoe_query({**MANDATORY, "device_id": "5device"}, TOKEN)
    assert verdict_of(query, proto) is Verdict.MALFORMED
    with pytest.raises(ConfigError, match="coin_amount cannot be given a format in protocol adjoe"):
        protocol(field_formats={"coin_amount": "text"})
