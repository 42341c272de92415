"""The event loop long-running processes run on: uvloop where it is installed, as uvicorn does for
the ingress, else asyncio's own.

Measured in back-to-back one-process drains of 60,000 payouts: 7 to 10% more payouts per second on
uvloop (docs/benchmarks.md). Nothing here depends on which loop runs: asyncpg and aio-pika support
both, and the tests run the same code on asyncio's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

__all__ = ["run"]

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows, PyPy): asyncio's loop serves
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop when available."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)
