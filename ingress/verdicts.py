"""What the ingress can tell a provider, before each protocol words it in its own format."""

from __future__ import annotations

from enum import StrEnum

from schema.errors import PayoutsError

__all__ = ["Rejection", "Verdict"]


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    IP_NOT_ALLOWED = "ip_not_allowed"
    TOO_LARGE = "too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNKNOWN_CURRENCY = "unknown_currency"
    # Too many requests from this address failed verification (ingress/abuse.py).
    RATE_LIMITED = "rate_limited"
    TRY_AGAIN = "try_again"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    Verdict.ACCEPTED: 200,
    Verdict.MALFORMED: 400,
    Verdict.BAD_SIGNATURE: 403,
    Verdict.IP_NOT_ALLOWED: 403,
    Verdict.TOO_LARGE: 413,
    Verdict.METHOD_NOT_ALLOWED: 405,
    Verdict.UNKNOWN_CURRENCY: 400,
    Verdict.RATE_LIMITED: 429,
    Verdict.TRY_AGAIN: 503,
}


class Rejection(PayoutsError):
    """A request refused before anything was published; `detail` is safe to show the caller.

    `after_signature` is set when the request's signature had been found good: the refusal is
    then the provider's own mistake, which the abuse cap does not count against its address.
    """

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(f"{verdict}: {detail}")
        self.verdict = verdict
        self.detail = detail
        self.after_signature = False
