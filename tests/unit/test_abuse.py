"""The cap on failed verifications: per address, per minute, only for unverified requests."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from ingress import abuse
from ingress.abuse import COUNTED_VERDICTS, FailedVerificationLimiter
from ingress.verdicts import Verdict

ATTACKER = ip_address("198.51.100.7")
PROVIDER = ip_address("203.0.113.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_limited_once_it_used_up_its_failures() -> None:
    limiter = FailedVerificationLimiter(3, Clock())
    for _ in range(3):
        assert not limiter.limited(ATTACKER)
        limiter.count(ATTACKER, Verdict.BAD_SIGNATURE)
    assert limiter.limited(ATTACKER)
    assert not limiter.limited(PROVIDER), "another address keeps its own count"
    assert not limiter.limited(None)


@pytest.mark.parametrize("verdict", sorted(set(Verdict) - COUNTED_VERDICTS))
def test_refusals_after_a_good_signature_are_not_counted(verdict: Verdict) -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(PROVIDER, verdict)
    assert not limiter.limited(PROVIDER)


@pytest.mark.parametrize("verdict", sorted(COUNTED_VERDICTS))
def test_every_unverified_refusal_is_counted(verdict: Verdict) -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(ATTACKER, verdict)
    assert limiter.limited(ATTACKER)


def test_the_count_starts_again_each_minute() -> None:
    clock = Clock()
    limiter = FailedVerificationLimiter(2, clock)
    limiter.count(ATTACKER, Verdict.MALFORMED)
    limiter.count(ATTACKER, Verdict.MALFORMED)
    assert limiter.limited(ATTACKER)
    clock.now += abuse.WINDOW_SECONDS
    assert not limiter.limited(ATTACKER)


def test_requests_of_unknown_origin_share_one_count() -> None:
    limiter = FailedVerificationLimiter(1, Clock())
    limiter.count(None, Verdict.BAD_SIGNATURE)
    assert limiter.limited(None)
    assert not limiter.limited(ATTACKER)


def test_past_the_tracked_addresses_new_ones_share_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(abuse, "MAX_TRACKED_ADDRESSES", 2)
    limiter = FailedVerificationLimiter(2, Clock())
    limiter.count(ip_address("192.0.2.1"), Verdict.BAD_SIGNATURE)
    limiter.count(ip_address("192.0.2.2"), Verdict.BAD_SIGNATURE)
    limiter.count(ip_address("192.0.2.3"), Verdict.BAD_SIGNATURE)
    limiter.count(ip_address("192.0.2.4"), Verdict.BAD_SIGNATURE)
    assert limiter.limited(ip_address("192.0.2.5")), "the shared count is used up"
    assert not limiter.limited(ip_address("192.0.2.1")), "tracked addresses keep their own"
