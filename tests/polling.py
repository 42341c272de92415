"""Waiting for something another process or task does, with a limit and a clear failure."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

DEFAULT_LIMIT_SECONDS = 30.0


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    limit_seconds: float = DEFAULT_LIMIT_SECONDS,
) -> None:
    deadline = time.monotonic() + limit_seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_seconds}s waiting for: {what}")
        await asyncio.sleep(0.1)
