"""When a worker's next batch starts: once it is full, or its linger after its first item is
over; and only while fewer than the allowed number of batches are running. A batch that must wait
for a free slot keeps growing meanwhile, and starts the moment one frees.

A batch finishing does not cut the next one's linger short: under a steady, moderate rate that
would start a batch of one or two behind every commit, each paying a whole transaction's round
trips for a couple of payouts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["Batches"]

Item = TypeVar("Item")


class Batches(Generic[Item]):
    """Collects items and runs `settle` on each batch of them as a task of its own."""

    def __init__(
        self,
        settle: Callable[[list[Item]], Coroutine[object, object, None]],
        *,
        size: int,
        linger_seconds: float,
        concurrent: int,
    ) -> None:
        self._settle = settle
        self._size = size
        self._linger_seconds = linger_seconds
        self._concurrent = concurrent
        self._collecting: list[Item] = []
        # Armed by the first item collected. Collected items with no linger running are due:
        # it is over, or a full batch waits, and only a free slot is missing.
        self._linger: asyncio.TimerHandle | None = None
        self.running: set[asyncio.Task[None]] = set()

    def add(self, item: Item) -> None:
        self._collecting.append(item)
        if len(self._collecting) >= self._size:
            self._start()
        elif len(self._collecting) == 1:
            self._linger = asyncio.get_running_loop().call_later(self._linger_seconds, self._start)

    def start_all(self) -> None:
        """Start everything collected now, in as many batches as it takes, whatever is running:
        for a shutdown, so that nothing waits for a batch to finish first."""
        while self._collecting:
            self._start(ignore_limit=True)

    def _start(self, *, ignore_limit: bool = False) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._collecting or (len(self.running) >= self._concurrent and not ignore_limit):
            return
        batch = self._collecting[: self._size]
        self._collecting = self._collecting[len(batch) :]  # what is left over is due already
        task = asyncio.create_task(self._settle(batch))
        self.running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if self._linger is None:
            self._start()
