"""The cap on failed logins: a few per window for each client address and each operator name,
so that neither one address nor many addresses together can guess a password."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FailedLogins"]

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
# Past this many keys, those whose failures have all left the window are forgotten, so a flood
# of addresses or names cannot grow the memory for long.
PRUNE_ABOVE_KEYS = 10_000


class FailedLogins:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
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
