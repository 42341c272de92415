"""Property-based: whatever arrives, the answer is a Rejection or a correctly signed Claim.

Never another exception (which the ingress would have to turn into a 503), never a claim whose
signature does not verify, never an amount that is not a positive, finite, in-range decimal.
"""

from __future__ import annotations

import hashlib
import unicodedata
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress import fields
from ingress.client_ip import client_address, is_allowed
from ingress.protocols.adjoe import Adjoe
from ingress.protocols.offerwall_md5 import OfferwallMd5
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from tests.factories import provider
from tests.signing import adjoe_query, offerwall_query

if TYPE_CHECKING:
    from collections.abc import Callable

    from ingress.protocols.base import Claim

T = TypeVar("T")
KEY = "hostile-key"
MAX_AMOUNT = Decimal(100000)
OFFERWALL = OfferwallMd5(provider("offerwall_md5", amount_decimal_places=2), {"TEST_SECRET": KEY})
ADJOE = Adjoe(provider("adjoe"), {"TEST_SECRET": KEY})
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def attempt(function: Callable[[Any], T], argument: Any) -> T | Rejection:
    """The result, or the Rejection raised; any other exception fails the test."""
    try:
        return function(argument)
    except Rejection as rejection:
        return rejection


def read_offerwall(query: str) -> Claim:
    return OFFERWALL.verify(parse_query(query.encode()))


def read_adjoe(query: str) -> Claim:
    return ADJOE.verify(parse_query(query.encode()))


query_bytes = st.binary(max_size=300) | st.lists(
    st.sampled_from(
        [
            b"user_id",
            b"amount",
            b"trans_id",
            b"sign",
            b"sid",
            b"=",
            b"&",
            b"%",
            b"%2",
            b"%C3",
            b"%ff",
            b"+",
            b"1",
            b"\xc3\xa9",
            b"a",
            b"send_time",
        ]
    ),
    max_size=40,
).map(b"".join)
texts = st.text(max_size=40)


@PROPERTY_SETTINGS
@given(query_bytes)
def test_any_query_string_parses_or_is_malformed(raw: bytes) -> None:
    outcome = attempt(parse_query, raw)
    if isinstance(outcome, Rejection):
        assert outcome.verdict is Verdict.MALFORMED
    else:
        assert all(name for name in outcome)


def assert_sane_claim_amount(amount: Decimal, places: int) -> None:
    assert amount.is_finite()
    assert Decimal(0) < amount <= MAX_AMOUNT
    assert -amount.as_tuple().exponent <= places  # type: ignore[operator]


@PROPERTY_SETTINGS
@given(st.dictionaries(texts, texts, max_size=8))
def test_offerwall_never_accepts_without_a_valid_sign(params: dict[str, str]) -> None:
    try:
        claim = OFFERWALL.verify(params)
    except Rejection:
        return
    signed = {k: v for k, v in params.items() if k != "sign"}
    values = "".join(signed[k] for k in sorted(signed, key=str.encode))
    assert params["sign"].lower() == hashlib.md5((values + KEY).encode()).hexdigest()
    assert_sane_claim_amount(claim.amount, 2)


@PROPERTY_SETTINGS
@given(
    user=texts,
    amount=texts,
    trans=texts,
    send_time=texts,
    extra=st.dictionaries(texts, texts, max_size=3),
)
def test_offerwall_correctly_signed_hostile_values(
    user: str, amount: str, trans: str, send_time: str, extra: dict[str, str]
) -> None:
    params = {**extra, "user_id": user, "amount": amount, "trans_id": trans, "send_time": send_time}
    params.pop("sign", None)
    claim = attempt(read_offerwall, offerwall_query(params, KEY))
    if isinstance(claim, Rejection):
        assert claim.verdict is Verdict.MALFORMED
        return
    assert (claim.user_id, claim.transaction_id) == (user, trans)
    assert claim.amount == Decimal(amount)
    assert_sane_claim_amount(claim.amount, 2)


@PROPERTY_SETTINGS
@given(st.dictionaries(texts, texts, max_size=8))
def test_adjoe_never_accepts_without_a_valid_sid(params: dict[str, str]) -> None:
    try:
        claim = ADJOE.verify(params)
    except Rejection:
        return
    order = ("trans_uuid", "user_uuid", "currency", "coin_amount", "device_id", "sdk_app_id")
    expected = hashlib.sha1(("".join(params.get(n, "") for n in order) + KEY).encode()).hexdigest()
    assert params["sid"].lower() == expected
    assert_sane_claim_amount(claim.amount, 0)


@PROPERTY_SETTINGS
@given(
    user=texts,
    amount=texts,
    currency=texts,
    trans=st.uuids(version=4).map(str) | texts,
    device=texts,
)
def test_adjoe_correctly_signed_hostile_values(
    user: str, amount: str, currency: str, trans: str, device: str
) -> None:
    params = {
        "user_uuid": user,
        "coin_amount": amount,
        "currency": currency,
        "trans_uuid": trans,
        "device_id": device,
    }
    claim = attempt(read_adjoe, adjoe_query(params, KEY))
    if isinstance(claim, Rejection):
        assert claim.verdict is Verdict.MALFORMED
        return
    assert claim.transaction_id == trans.lower()
    assert claim.amount == int(amount)
    assert_sane_claim_amount(claim.amount, 0)


@pytest.mark.parametrize(
    "value",
    [
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "-0",
        "0",
        "0.0",
        "0.00",
        "+1",
        "-1",
        "1" * 19,
        "99999999999999999999",
        "1.001",
        "1.",
        ".5",
        "1..0",
        "0x10",
        "1_000",
        "\u0661\u0660\u0660",  # Arabic-Indic digits, which Decimal() accepts
        "\uff11\uff10\uff10",  # full-width digits
        "²",
        " 1",
        "1 ",
        "\t1",
        "1\n",
        "1,5",
        "100000.01",
        "",
    ],
)
def test_amount_edge_cases_are_refused(value: str) -> None:
    with pytest.raises(Rejection) as raised:
        fields.amount("amount", value, decimal_places=2, maximum=MAX_AMOUNT)
    assert raised.value.verdict is Verdict.MALFORMED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "1"),
        ("0.01", "0.01"),
        ("0.5", "0.5"),
        ("100000", "100000"),
        ("99999.99", "99999.99"),
        ("10.50", "10.50"),
    ],
)
def test_amounts_in_plain_notation_are_kept_exactly(value: str, expected: str) -> None:
    amount = fields.amount("amount", value, decimal_places=2, maximum=MAX_AMOUNT)
    assert str(amount) == expected


def _refused_for_hiding_characters(value: str) -> bool:
    try:
        fields.text("name", value, max_length=128, required=False)
    except Rejection as rejection:
        return "control characters" in rejection.detail
    return False


def _hides_content(value: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in value)


@pytest.mark.parametrize("code_point", range(128))
def test_text_refuses_exactly_the_ascii_control_characters(code_point: int) -> None:
    value = f"a{chr(code_point)}b"
    assert _refused_for_hiding_characters(value) is _hides_content(value)


@PROPERTY_SETTINGS
@given(st.text(max_size=12))
def test_text_refuses_exactly_the_characters_that_hide_content(value: str) -> None:
    assert _refused_for_hiding_characters(value) is _hides_content(value)


def test_signed_urlencoded_request_round_trips_through_the_parser() -> None:
    params = {"user_id": "ü & = + %", "amount": "1", "trans_id": "t", "send_time": "1700000000"}
    assert parse_query(urlencode(params).encode()) == params


@PROPERTY_SETTINGS
@given(peer=st.one_of(st.none(), texts), forwarded=st.one_of(st.none(), st.text(max_size=200)))
def test_any_forwarding_header_gives_an_address_or_none(
    peer: str | None, forwarded: str | None
) -> None:
    proxies = (ip_network("10.0.0.0/8"), ip_network("::1/128"))
    address = client_address(peer, forwarded, proxies)
    assert address is None or isinstance(address, IPv4Address | IPv6Address)
    try:
        direct = ip_address(peer.strip()) if peer else None
    except ValueError:
        direct = None
    if direct is not None and not any(direct in proxy for proxy in proxies):
        assert address == direct  # no header lets a direct caller pose as someone else
    assert not is_allowed(address, ())  # an empty allowlist admits nobody
