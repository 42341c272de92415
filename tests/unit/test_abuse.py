"""The cap on failed verifications: per address, per minute, only for unverified requests."""

from __future__ import annotations

import json
from ipaddress import ip_address
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from starlette.requests import Request

from ingress import abuse
from ingress.abuse import COUNTED_VERDICTS, FailedVerificationLimiter
from ingress.protocols.aigame_payout import AigamePayout
from ingress.protocols.offerwall_md5 import OfferwallMd5
from ingress.verdicts import Rejection, Verdict
from tests.clocks import Clock
from tests.factories import provider
from tests.signing import aigame_payout_body, offerwall_query
from tests.unit.test_aigame_payout import fresh

if TYPE_CHECKING:
    from ingress.protocols.base import ProviderProtocol

ATTACKER = ip_address("198.51.100.7")
PROVIDER = ip_address("203.0.113.1")


def refusal(verdict: Verdict, *, after_signature: bool = False) -> Rejection:
    rejection = Rejection(verdict, "refused")
    rejection.after_signature = after_signature
    return rejection


def test_an_address_is_limited_once_it_used_up_its_failures() -> None:
    limiter = FailedVerificationLimiter(3, Clock())
    for _ in range(3):
        assert not limiter.limited(ATTACKER)
        limiter.count(ATTACKER, refusal(Verdict.BAD_SIGNATURE))
    assert limiter.limited(ATTACKER)
    assert not limiter.limited(PROVIDER), "another address keeps its own count"
    assert not limiter.limited(None)


@pytest.mark.parametrize("verdict", sorted(Verdict))
def test_refusals_after_a_good_signature_are_not_counted(verdict: Verdict) -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(PROVIDER, refusal(verdict, after_signature=True))
    assert not limiter.limited(PROVIDER)


@pytest.mark.parametrize("verdict", sorted(set(Verdict) - COUNTED_VERDICTS))
def test_refusals_that_never_concern_a_signature_are_not_counted(verdict: Verdict) -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(PROVIDER, refusal(verdict))
    assert not limiter.limited(PROVIDER)


@pytest.mark.parametrize("verdict", sorted(COUNTED_VERDICTS))
def test_every_unverified_refusal_is_counted(verdict: Verdict) -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(ATTACKER, refusal(verdict))
    assert limiter.limited(ATTACKER)


def test_the_count_starts_again_each_minute() -> None:
    clock = Clock()
    limiter = FailedVerificationLimiter(2, clock)
    limiter.count(ATTACKER, refusal(Verdict.MALFORMED))
    limiter.count(ATTACKER, refusal(Verdict.MALFORMED))
    assert limiter.limited(ATTACKER)
    clock.now += abuse.WINDOW_SECONDS
    assert not limiter.limited(ATTACKER)


def test_requests_of_unknown_origin_share_one_count() -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(None, refusal(Verdict.BAD_SIGNATURE))
    assert limiter.limited(None)
    assert not limiter.limited(ATTACKER)


def test_past_the_tracked_addresses_new_ones_are_neither_counted_nor_limited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A forger with more addresses than the table holds must not lock the provider out."""
    monkeypatch.setattr(abuse, "MAX_TRACKED_ADDRESSES", 2)
    limiter = FailedVerificationLimiter(1, Clock())
    for last_octet in range(1, 10):
        limiter.count(ip_address(f"192.0.2.{last_octet}"), refusal(Verdict.BAD_SIGNATURE))
    assert limiter.limited(ip_address("192.0.2.1")), "tracked addresses keep their own count"
    assert limiter.limited(ip_address("192.0.2.2"))
    assert not limiter.limited(ip_address("192.0.2.3")), "not tracked: not counted"
    assert not limiter.limited(PROVIDER)


def get_request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "query_string": query.encode(), "headers": []})


def post_request() -> Request:
    return Request({"type": "http", "method": "POST", "query_string": b"", "headers": []})


async def refusal_of(protocol: ProviderProtocol, request: Request, body: bytes = b"") -> Rejection:
    with pytest.raises(Rejection) as raised:
        await protocol.read_claim(request, body)
    return raised.value


OFFERWALL_FIELDS = {"user_id": "u-1", "amount": "5", "trans_id": "t-1", "send_time": "1700000000"}


@pytest.mark.parametrize(
    ("query", "after_signature"),
    [
        (offerwall_query({**OFFERWALL_FIELDS, "amount": "100001"}, "key"), True),  # over max
        (offerwall_query({**OFFERWALL_FIELDS, "send_time": "soon"}, "key"), True),
        (offerwall_query(OFFERWALL_FIELDS, "forged"), False),
        (urlencode(OFFERWALL_FIELDS), False),  # no sign at all
        ("user_id=%zz", False),  # not even a query string
    ],
)
async def test_a_query_protocol_marks_the_refusals_raised_after_a_good_signature(
    query: str, after_signature: bool
) -> None:
    offerwall = OfferwallMd5(provider("offerwall_md5"), {"TEST_SECRET": "key"})
    rejection = await refusal_of(offerwall, get_request(query))
    assert rejection.after_signature is after_signature


@pytest.mark.parametrize(
    ("fields", "key", "after_signature"),
    [
        ({"win_amount": "10.005"}, "key", True),  # finer than the instance's decimal places
        ({"currency": "XXX"}, "key", True),  # not an allowed currency
        ({}, "forged", False),
        ({"user_id": ""}, "key", False),  # a required field missing: refused before the sign
    ],
)
async def test_a_json_protocol_marks_the_refusals_raised_after_a_good_signature(
    fields: dict[str, object], key: str, after_signature: bool
) -> None:
    aigame = AigamePayout(
        provider("aigame_payout", amount_decimal_places=2, allowed_currencies=["VND2"]),
        {"TEST_SECRET": "key"},
    )
    body = aigame_payout_body(fresh(**fields), key)
    rejection = await refusal_of(aigame, post_request(), json.dumps(body).encode())
    assert rejection.after_signature is after_signature
