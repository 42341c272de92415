"""Spec 000: md5 over values ordered by parameter name, plus the pub key."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from urllib.parse import quote

import pytest

from ingress.protocols.offerwall_md5 import OfferwallMd5, sign
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError
from tests.factories import provider
from tests.signing import offerwall_query

SPEC_EXAMPLE_QUERY = (
    "user_id=a&amount=1&trans_id=b&gaid=e&mac=c&imei=f&android_id=d"
    "&send_time=1694588072&sign=95c5b7b27107c11f6200217e6aec0782"
)
PUB_KEY = "h"
MANDATORY = {
    "user_id": "player-7",
    "amount": "250",
    "trans_id": "tx-1001",
    "send_time": "1694588072",
}


def protocol(pub_key: str = PUB_KEY, **overrides: object) -> OfferwallMd5:
    return OfferwallMd5(provider("offerwall_md5", **overrides), {"TEST_SECRET": pub_key})


def verdict_of(query: str, proto: OfferwallMd5 | None = None) -> Verdict:
    with pytest.raises(Rejection) as raised:
        (proto or protocol()).verify(parse_query(query.encode()))
    return raised.value.verdict


def test_spec_worked_example_concatenates_values_in_ascii_name_order() -> None:
    params = parse_query(SPEC_EXAMPLE_QUERY.encode())
    del params["sign"]
    ordered = "".join(params[name] for name in sorted(params))
    assert ordered + PUB_KEY == "1defc1694588072bah"
    assert sign(params, PUB_KEY) == "95c5b7b27107c11f6200217e6aec0782"


def test_spec_worked_example_verifies() -> None:
    claim = protocol().verify(parse_query(SPEC_EXAMPLE_QUERY.encode()))
    assert (claim.user_id, claim.amount, claim.transaction_id) == ("a", Decimal(1), "b")
    assert claim.currency == "COIN"
    assert claim.signature == "95c5b7b27107c11f6200217e6aec0782"
    assert claim.attributes == {
        "send_time": "1694588072",
        "gaid": "e",
        "mac": "c",
        "imei": "f",
        "android_id": "d",
    }


def test_uppercase_sign_is_the_same_digest() -> None:
    query = SPEC_EXAMPLE_QUERY.replace(
        "95c5b7b27107c11f6200217e6aec0782", "95C5B7B27107C11F6200217E6AEC0782"
    )
    assert (
        protocol().verify(parse_query(query.encode())).signature
        == "95c5b7b27107c11f6200217e6aec0782"
    )


def test_missing_optional_parameters_are_simply_not_signed() -> None:
    claim = protocol().verify(parse_query(offerwall_query(MANDATORY, PUB_KEY).encode()))
    assert claim.amount == Decimal(250)
    assert claim.attributes == {"send_time": "1694588072"}


def test_unknown_extra_parameters_are_signed_too() -> None:
    query = offerwall_query({**MANDATORY, "campaign": "summer", "zz_extra": "1"}, PUB_KEY)
    assert protocol().verify(parse_query(query.encode())).transaction_id == "tx-1001"


def test_extra_parameter_added_after_signing_is_rejected() -> None:
    query = offerwall_query(MANDATORY, PUB_KEY) + "&campaign=summer"
    assert verdict_of(query) is Verdict.BAD_SIGNATURE


def test_renamed_parameters_are_ordered_by_their_configured_names() -> None:
    renamed = protocol(parameters={"user_id": "uid", "amount": "coins", "trans_id": "a_tx"})
    sent = {"uid": "player-7", "coins": "250", "a_tx": "tx-1001", "send_time": "1694588072"}
    claim = renamed.verify(parse_query(offerwall_query(sent, PUB_KEY).encode()))
    assert (claim.user_id, claim.amount, claim.transaction_id) == (
        "player-7",
        Decimal(250),
        "tx-1001",
    )


def test_renamed_instance_does_not_accept_the_spec_names() -> None:
    renamed = protocol(parameters={"user_id": "uid"})
    assert verdict_of(offerwall_query(MANDATORY, PUB_KEY), renamed) is Verdict.MALFORMED


@pytest.mark.parametrize("field", [*MANDATORY, "gaid", "mac", "imei", "android_id"])
def test_tampering_with_any_parameter_breaks_the_signature(field: str) -> None:
    params = {**MANDATORY, "gaid": "g-1", "mac": "m-1", "imei": "i-1", "android_id": "a-1"}
    signed = parse_query(offerwall_query(params, PUB_KEY).encode())
    signed[field] = signed[field] + "9"
    with pytest.raises(Rejection) as raised:
        protocol().verify(signed)
    assert raised.value.verdict is Verdict.BAD_SIGNATURE


def test_wrong_pub_key_is_rejected() -> None:
    assert verdict_of(offerwall_query(MANDATORY, "not-h")) is Verdict.BAD_SIGNATURE


def test_missing_sign_is_malformed() -> None:
    assert verdict_of("user_id=a&amount=1&trans_id=b&send_time=1") is Verdict.MALFORMED


@pytest.mark.parametrize("encoded_space", ["+", "%20"])
def test_plus_and_percent_encoding_decode_to_the_signed_value(encoded_space: str) -> None:
    values = "".join(v for _, v in sorted({**MANDATORY, "user_id": "Jürgen Ö"}.items()))
    import hashlib

    digest = hashlib.md5((values + PUB_KEY).encode()).hexdigest()
    user = quote("Jürgen", safe="") + encoded_space + quote("Ö", safe="")
    query = f"user_id={user}&amount=250&trans_id=tx-1001&send_time=1694588072&sign={digest}"
    assert protocol().verify(parse_query(query.encode())).user_id == "Jürgen Ö"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "-5"),
        ("amount", "+5"),
        ("amount", "1e3"),
        ("amount", "007"),
        ("amount", "2.5"),
        ("amount", "0"),
        ("amount", "100001"),
        ("amount", "5\n"),
        ("send_time", "soon"),
        ("user_id", " padded"),
        ("user_id", "x" * 129),
        ("trans_id", "tab\there"),
    ],
)
def test_correctly_signed_but_malformed_fields_are_refused(field: str, value: str) -> None:
    query = offerwall_query({**MANDATORY, field: value}, PUB_KEY)
    assert verdict_of(query) is Verdict.MALFORMED


def test_fractional_amounts_when_the_instance_allows_decimal_places() -> None:
    proto = protocol(amount_decimal_places=2)
    claim = proto.verify(
        parse_query(offerwall_query({**MANDATORY, "amount": "12.50"}, PUB_KEY).encode())
    )
    assert claim.amount == Decimal("12.50")
    assert (
        verdict_of(offerwall_query({**MANDATORY, "amount": "1.005"}, PUB_KEY), proto)
        is Verdict.MALFORMED
    )


def test_digits_shifted_between_adjacent_fields_keep_the_signature() -> None:
    """The threat in docs/security.md: the signature alone cannot tell these two apart."""
    first = offerwall_query({**MANDATORY, "amount": "1", "android_id": "23"}, PUB_KEY)
    shifted = offerwall_query({**MANDATORY, "amount": "12", "android_id": "3"}, PUB_KEY)
    assert parse_query(first.encode())["sign"] == parse_query(shifted.encode())["sign"]


def test_instance_without_default_currency_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="default_currency is required"):
        protocol(default_currency=None)


def test_renaming_onto_a_fixed_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        protocol(parameters={"user_id": "send_time"})


def test_renaming_an_unknown_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be renamed"):
        protocol(parameters={"coins": "c"})


def test_during_a_rotation_either_secret_verifies_and_the_claim_names_which() -> None:
    secrets = {"OW_CURRENT": "old-key", "OW_NEXT": "new-key"}
    rotating = OfferwallMd5(provider("offerwall_md5"), secrets)
    for key, name in (("old-key", "OW_CURRENT"), ("new-key", "OW_NEXT")):
        claim = rotating.verify(parse_query(offerwall_query(MANDATORY, key).encode()))
        assert claim.secret_name == name
    with pytest.raises(Rejection):
        rotating.verify(parse_query(offerwall_query(MANDATORY, "retired-key").encode()))


def test_names_beyond_ascii_are_ordered_by_their_utf8_bytes() -> None:
    names = ["z", "é", "\uff41", "\U0001f600", "A"]  # bytes 7a, c3a9, efbda1, f09f9880, 41
    params = {name: str(index) for index, name in enumerate(names)}
    by_bytes = sorted(names, key=lambda name: name.encode())
    assert by_bytes == ["A", "z", "é", "\uff41", "\U0001f600"]
    values = "".join(params[name] for name in by_bytes)
    assert sign(params, PUB_KEY) == hashlib.md5((values + PUB_KEY).encode()).hexdigest()
