"""Which of a caller's configured secrets a request proves it holds. Each secret is configured
as several environment variables while it is rotated; callers learn the variable's name (for
logs and metrics), never the secret."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["matching_secret"]


def matching_secret(
    secrets: Mapping[str, str], received: str, expected_for: Callable[[str], str] | None = None
) -> str | None:
    """The name of the first of `secrets` (name -> value) that `received` matches, or None.

    Without `expected_for`, `received` is the secret itself (an API key, a token): compared
    exactly, as case matters. With it, `received` is the hex digest `expected_for(secret)`
    gives: hex case carries no meaning, so either case matches. Constant-time comparisons.
    """
    for name, secret in secrets.items():
        if expected_for is None:
            matched = hmac.compare_digest(secret.encode(), received.encode())
        else:
            matched = hmac.compare_digest(expected_for(secret).encode(), received.lower().encode())
        if matched:
            return name
    return None
