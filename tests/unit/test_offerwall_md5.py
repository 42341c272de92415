"""Spec 000: md5 over values ordered by parameter name, plus the pub key."""

from __future__ import annotations

import hashlib
import logging
from decimal import Decimal
from urllib.parse import quote

import pytest

from ingress.app import create_app
from ingress.protocols.offerwall_md5 import OfferwallMd5, sign
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError
from schema.logs import logged_fields
from schema.outcomes import Outcome
from schema.settings import Settings
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


# The spec's example fills the device ids with placeholder letters, which no real id looks like.
PLACEHOLDER_DEVICE_IDS = {name: "text" for name in ("gaid", "mac", "imei", "android_id")}
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
DEVICE_IDS = {
    "gaid": GAID,
    "mac": "00:1A:2B:3C:4D:5E",
    "imei": "490154203237518",
    "android_id": "9774d56d682e549c",
}


def test_spec_worked_example_verifies() -> None:
    proto = protocol(extra_parameters=PLACEHOLDER_DEVICE_IDS)
    claim = proto.verify(parse_query(SPEC_EXAMPLE_QUERY.encode()))
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


def test_spec_worked_example_is_refused_by_default_for_its_placeholder_device_ids() -> None:
    assert verdict_of(SPEC_EXAMPLE_QUERY) is Verdict.MALFORMED


def test_by_default_the_spec_device_ids_are_accepted_in_their_formats() -> None:
    query = offerwall_query({**MANDATORY, **DEVICE_IDS}, PUB_KEY)
    claim = protocol().verify(parse_query(query.encode()))
    assert claim.attributes == {"send_time": "1694588072", **DEVICE_IDS}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gaid", GAID[:-1]),
        ("gaid", GAID + "0"),
        ("mac", "00:1A:2B-3C:4D:5E"),
        ("imei", "49015420323751"),
        ("imei", "4901542032375180"),
        ("android_id", "9774d56d682e549"),
        ("android_id", "9774d56d682e549g"),
    ],
)
def test_by_default_a_device_id_out_of_its_format_is_refused(name: str, value: str) -> None:
    query = offerwall_query({**MANDATORY, name: value}, PUB_KEY)
    with pytest.raises(Rejection) as raised:
        protocol().verify(parse_query(query.encode()))
    assert raised.value.verdict is Verdict.MALFORMED
    assert raised.value.detail == f"parameter {name!r} does not have its format {name}"
    assert raised.value.after_signature is False  # verify() alone marks nothing
    assert value not in raised.value.detail


def test_an_empty_device_id_signs_nothing_and_needs_no_format() -> None:
    query = offerwall_query({**MANDATORY, "imei": "", "gaid": GAID}, PUB_KEY)
    assert protocol().verify(parse_query(query.encode())).attributes["gaid"] == GAID


def test_uppercase_sign_is_the_same_digest() -> None:
    query = SPEC_EXAMPLE_QUERY.replace(
        "95c5b7b27107c11f6200217e6aec0782", "95C5B7B27107C11F6200217E6AEC0782"
    )
    proto = protocol(extra_parameters=PLACEHOLDER_DEVICE_IDS)
    assert proto.verify(parse_query(query.encode())).signature == "95c5b7b27107c11f6200217e6aec0782"


def test_missing_optional_parameters_are_simply_not_signed() -> None:
    claim = protocol().verify(parse_query(offerwall_query(MANDATORY, PUB_KEY).encode()))
    assert claim.amount == Decimal(250)
    assert claim.attributes == {"send_time": "1694588072"}


def test_declared_extra_parameters_are_signed_too() -> None:
    declared = protocol(extra_parameters={"campaign": "token", "zz_extra": {"regex": "[0-9]"}})
    query = offerwall_query({**MANDATORY, "campaign": "summer", "zz_extra": "1"}, PUB_KEY)
    assert declared.verify(parse_query(query.encode())).transaction_id == "tx-1001"


def test_an_undeclared_parameter_is_refused_even_when_signed() -> None:
    query = offerwall_query({**MANDATORY, "campaign": "summer"}, PUB_KEY)
    with pytest.raises(Rejection) as raised:
        protocol().verify(parse_query(query.encode()))
    assert raised.value.verdict is Verdict.MALFORMED
    assert raised.value.detail == (
        "parameter 'campaign' is not declared in this instance's extra_parameters"
    )


def test_a_declaration_replaces_the_default_device_ids() -> None:
    declared = protocol(extra_parameters={"campaign": "token"})
    query = offerwall_query({**MANDATORY, "gaid": GAID}, PUB_KEY)
    assert verdict_of(query, declared) is Verdict.MALFORMED


def test_a_declared_regex_must_match_the_whole_value() -> None:
    declared = protocol(extra_parameters={"aff_sub": {"regex": "[a-z]{3}"}})
    for value in ("abcd", "ab", "abc\n", "1abc"):
        query = offerwall_query({**MANDATORY, "aff_sub": value}, PUB_KEY)
        assert verdict_of(query, declared) is Verdict.MALFORMED
    query = offerwall_query({**MANDATORY, "aff_sub": "abc"}, PUB_KEY)
    assert declared.verify(parse_query(query.encode())).transaction_id == "tx-1001"


@pytest.mark.parametrize(
    ("declared", "good", "bad"),
    [
        ("idfa", GAID.upper(), "not-a-uuid"),
        ("ip", "203.0.113.9", "203.0.113.256"),
        ("ip", "2001:db8::1", "fe80::1%eth0"),
        ("token", "Ab-1_2.x~", "a b"),
        ("text", "Summer sale", " padded"),
    ],
)
def test_built_in_formats(declared: str, good: str, bad: str) -> None:
    proto = protocol(extra_parameters={"x": declared})
    query = offerwall_query({**MANDATORY, "x": good}, PUB_KEY)
    assert proto.verify(parse_query(query.encode())).transaction_id == "tx-1001"
    assert verdict_of(offerwall_query({**MANDATORY, "x": bad}, PUB_KEY), proto) is (
        Verdict.MALFORMED
    )


def test_any_accepts_every_parameter_unchecked() -> None:
    query = offerwall_query({**MANDATORY, "campaign": "summer", "gaid": "g"}, PUB_KEY)
    claim = protocol(extra_parameters="any").verify(parse_query(query.encode()))
    assert claim.attributes["gaid"] == "g"


@pytest.mark.parametrize(
    ("extra_parameters", "message"),
    [
        ({"aff_sub": {"regex": "[a-z"}}, "extra_parameters.aff_sub: regex '\\[a-z' does not"),
        ({"aff_sub": {"regex": "[a-z]*"}}, "matches the empty string"),
        ({"aff_sub": "uuid4"}, "unknown format 'uuid4'"),
        ({"amount": "text"}, "amount are the spec's own parameters"),
        ({"send_time": "text"}, "send_time are the spec's own parameters"),
    ],
)
def test_extra_parameters_are_checked_at_start_up(extra_parameters: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        protocol(extra_parameters=extra_parameters)


def test_field_formats_narrow_the_free_mandatory_fields() -> None:
    proto = protocol(field_formats={"trans_id": {"regex": "tx-[0-9]{4}"}})
    assert proto.verify(parse_query(offerwall_query(MANDATORY, PUB_KEY).encode()))
    query = offerwall_query({**MANDATORY, "trans_id": "tx-100"}, PUB_KEY)
    assert verdict_of(query, proto) is Verdict.MALFORMED


def test_field_formats_only_for_the_free_fields() -> None:
    with pytest.raises(ConfigError, match="amount cannot be given a format"):
        protocol(field_formats={"amount": "text"})


def test_send_time_is_ten_digits_of_unix_seconds() -> None:
    for value in ("169458807", "16945880720", "0694588072"):
        query = offerwall_query({**MANDATORY, "send_time": value}, PUB_KEY)
        assert verdict_of(query) is Verdict.MALFORMED


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


def test_a_shift_between_amount_and_android_id_fails_the_format() -> None:
    android_id = "1" + DEVICE_IDS["android_id"][1:]
    first = offerwall_query({**MANDATORY, "amount": "1", "android_id": android_id}, PUB_KEY)
    shifted = offerwall_query({**MANDATORY, "amount": "11", "android_id": android_id[1:]}, PUB_KEY)
    assert parse_query(first.encode())["sign"] == parse_query(shifted.encode())["sign"]
    assert protocol().verify(parse_query(first.encode())).amount == Decimal(1)
    assert verdict_of(shifted) is Verdict.MALFORMED


def warnings_for(**overrides: object) -> list[str]:
    instance = provider("offerwall_md5", **overrides)
    return OfferwallMd5(instance, {"TEST_SECRET": PUB_KEY}).startup_warnings()


def test_start_up_warns_of_any() -> None:
    (warning,) = warnings_for(extra_parameters="any")
    assert warning.startswith('extra_parameters = "any"')
    assert "shifted copy that arrives before the original is credited" in warning


def test_start_up_warns_of_a_free_parameter_beside_amount_naming_the_pair() -> None:
    # aff_sub sorts between amount and android_id; an absent android_id leaves them adjacent.
    warnings = warnings_for(
        extra_parameters={"aff_sub": "text", "android_id": "android_id", "zz": "token"},
        field_formats={"user_id": "uuid"},
    )
    assert [warning.split(" can be")[0] for warning in warnings] == ["'aff_sub' and 'amount'"]


def test_start_up_warns_of_a_free_parameter_beside_user_id_past_an_optional_one() -> None:
    warnings = warnings_for(
        extra_parameters={"v": {"regex": "[0-9]{2}"}, "w": {"regex": "[a-z]{1,4}"}},
        field_formats={"trans_id": {"regex": "[0-9]{12}"}},
    )
    # v has a fixed length, but a copy can leave it out and fold its digits into user_id.
    assert [warning.split(" can be")[0] for warning in warnings] == [
        "'user_id' and 'v'",
        "'user_id' and 'w'",
    ]


def test_start_up_warns_of_renamed_amount_beside_trans_id() -> None:
    warnings = warnings_for(
        parameters={"amount": "coins", "trans_id": "a_tx"}, field_formats={"user_id": "uuid"}
    )
    assert [warning.split(" can be")[0] for warning in warnings] == [
        "'a_tx' and 'android_id'",  # an optional device id folded whole into the free trans_id
        "'a_tx' and 'coins'",
    ]


def test_no_warning_when_every_free_neighbour_has_a_fixed_length() -> None:
    assert warnings_for(field_formats={"user_id": "uuid"}) == []
    assert warnings_for(extra_parameters={"b": "mac"}, field_formats={"user_id": "uuid"}) == []


def test_the_default_names_warn_of_trans_id_beside_user_id() -> None:
    (warning,) = warnings_for()
    assert warning.startswith("'trans_id' and 'user_id' can be next to each other")


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


def test_the_ingress_logs_each_risk_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(providers=(provider("offerwall_md5", extra_parameters="any"),))
    with caplog.at_level(logging.WARNING, logger="ingress.app"):
        create_app(settings, {"TEST_SECRET": "pub-key-never-logged"})
    (record,) = [r for r in caplog.records if r.getMessage() == "provider settings accept a risk"]
    fields = logged_fields(record)
    assert fields["provider_instance"] == "test-offerwall-md5"
    assert fields["risk"].startswith('extra_parameters = "any"')
    assert "pub-key-never-logged" not in str(fields)


def test_declared_device_ids_are_hashed_like_the_spec_ones() -> None:
    declared = protocol(extra_parameters={"idfa": "idfa", "client_ip": "ip", "aff": "token"})
    assert declared.sent_device_parameters == {
        "idfa",
        "client_ip",
        "gaid",
        "mac",
        "imei",
        "android_id",
    }


def test_operators_read_no_answer_per_outcome_it_answers_before_any() -> None:
    assert all(OfferwallMd5.outcome_answer(outcome) is None for outcome in Outcome)
