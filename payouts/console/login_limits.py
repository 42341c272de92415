"""The caps on failed logins: a few per window for each operator name, so that many addresses
together cannot guess a password, and more for each client address, so that one address
cannot try many names, while operators behind one address (a port-forward, a proxy) are not
locked out by the first few typos among them."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_FAILURES_PER_ADDRESS", "MAX_FAILURES_PER_NAME", "FailedLogins", "LoginCaps"]

MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 300.0
# Past this many keys, those whose failures have all left the window are forgotten, so a flood
# of addresses or names cannot grow the memory for long.
PRUNE_ABOVE_KEYS = 10_000


class FailedLogins:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> float | None:
        """Seconds until each of `keys` may try again, or None if all may now."""
        now = self._clock()
        waits = [
            failures[0] + self.window_seconds - now
            for failures in (self._recent(key, now) for key in keys)
            if len(failures) >= self.max_failures
        ]
        return max(waits) if waits else None

    def failed(self, *keys: str) -> None:
        now = self._clock()
        if len(self._failures) > PRUNE_ABOVE_KEYS:
            for key in [key for key in self._failures if not self._recent(key, now)]:
                del self._failures[key]
        for key in keys:
            self._recent(key, now).append(now)

    def retract(self, key: str) -> None:
        """Take back the latest failure of `key`: an attempt counted before its password was
        checked, which turned out right."""
        failures = self._failures.get(key)
        if failures:
            failures.pop()

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        return failures


@dataclass
class LoginCaps:
    """The two caps each login attempt counts against."""

    by_address: FailedLogins = field(default_factory=lambda: FailedLogins(MAX_FAILURES_PER_ADDRESS))
    by_name: FailedLogins = field(default_factory=lambda: FailedLogins(MAX_FAILURES_PER_NAME))

    def retry_after(self, address: str, name: str) -> float | None:
        """Seconds until both `address` and `name` may try again, or None if they may now."""
        waits = [
            wait
            for wait in (self.by_address.retry_after(address), self.by_name.retry_after(name))
            if wait is not None
        ]
        return max(waits) if waits else None

    def failed(self, address: str, name: str) -> None:
        self.by_address.failed(address)
        self.by_name.failed(name)

    def succeeded(self, address: str, name: str) -> None:
        """The attempt counted before its password was checked was right: it does not count
        against its address, and its name starts afresh."""
        self.by_address.retract(address)
        self.by_name.forget(name)
