"""A cap on requests that fail verification, per provider instance and client address.

Payment gateways count and cap unverified webhooks: past the cap an address is answered "try
again later" without its signature being computed, so a flood of forged callbacks costs little and
shows in the metrics. Verified requests are never counted, nor are refusals after a good
signature. The window is a fixed minute per process; with several ingress processes each keeps
its own count (docs/security.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ingress.verdicts import Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from ingress.client_ip import IPAddress
    from ingress.verdicts import Rejection

__all__ = ["COUNTED_VERDICTS", "FailedVerificationLimiter"]

# Refusals that say the caller could not prove it is the provider, when raised before a good
# signature was found. A refusal after one (an unknown currency, an amount over the maximum) is
# the provider's business mistake, not abuse.
COUNTED_VERDICTS = frozenset(
    {Verdict.BAD_SIGNATURE, Verdict.MALFORMED, Verdict.TOO_LARGE, Verdict.METHOD_NOT_ALLOWED}
)
WINDOW_SECONDS = 60
# Addresses tracked per window, so a flood from many addresses cannot grow memory without bound.
# Past this, new addresses go uncounted and unlimited until the minute ends: limiting them
# together would let a forger with enough addresses lock the real provider out.
MAX_TRACKED_ADDRESSES = 100_000


class FailedVerificationLimiter:
    """Counts one instance's verification failures per address in the current minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._window = -1
        # Keyed by the address itself (None: of unknown origin, all counted together): hashing
        # one is a quarter of the time of writing it as text, once per request.
        self._failures: dict[IPAddress | None, int] = {}

    def limited(self, address: IPAddress | None) -> bool:
        """True when `address` has used up its failures for this minute."""
        self._roll()
        return self._failures.get(address, 0) >= self._per_minute

    def count(self, address: IPAddress | None, rejection: Rejection) -> None:
        if rejection.after_signature or rejection.verdict not in COUNTED_VERDICTS:
            return
        self._roll()
        if address in self._failures:
            self._failures[address] += 1
        elif len(self._failures) < MAX_TRACKED_ADDRESSES:
            self._failures[address] = 1

    def _roll(self) -> None:
        window = int(self._clock() // WINDOW_SECONDS)
        if window != self._window:
            self._window = window
            self._failures.clear()
