"""When a worker's batches start: full at once, short at the end of their linger, never more
than the limit at a time, and a finishing batch does not cut the next one's linger short."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from workers.batching import Batches

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Far longer than a few turns of the loop, so "not yet" cannot be a race on a slow machine.
LONG_LINGER = 5.0


class Settler:
    """Records each batch it is given and holds it until released, as a commit would."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self._gates: list[asyncio.Event] = []
        self._started = asyncio.Condition()

    async def settle(self, batch: list[int]) -> None:
        gate = asyncio.Event()
        async with self._started:
            self.batches.append(batch)
            self._gates.append(gate)
            self._started.notify_all()
        await gate.wait()

    async def started(self, count: int) -> None:
        async with asyncio.timeout(10), self._started:
            await self._started.wait_for(lambda: len(self.batches) >= count)

    def finish(self, index: int) -> None:
        self._gates[index].set()

    def finish_all(self) -> None:
        for gate in self._gates:
            gate.set()


async def turns(count: int = 5) -> None:
    """Let the loop run what is ready: started tasks, done callbacks."""
    for _ in range(count):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def batches(
    *, size: int = 100, linger_seconds: float = LONG_LINGER, concurrent: int = 1
) -> AsyncIterator[tuple[Batches[int], Settler]]:
    settler = Settler()
    collector = Batches(
        settler.settle, size=size, linger_seconds=linger_seconds, concurrent=concurrent
    )
    try:
        yield collector, settler
    finally:
        collector.start_all()
        async with asyncio.timeout(10):
            while collector.running:  # a batch just started has not made its gate yet
                settler.finish_all()
                await turns()


async def test_a_full_batch_starts_at_once() -> None:
    async with batches(size=3) as (collector, settler):
        for item in (1, 2, 3, 4):
            collector.add(item)
        await turns()
        assert settler.batches == [[1, 2, 3]]


async def test_a_short_batch_starts_at_the_end_of_its_linger() -> None:
    async with batches(linger_seconds=0.05) as (collector, settler):
        collector.add(1)
        collector.add(2)
        await turns()
        assert settler.batches == []
        await settler.started(1)
        assert settler.batches == [[1, 2]]


async def test_a_finishing_batch_does_not_cut_the_next_ones_linger_short() -> None:
    async with batches(size=2) as (collector, settler):
        collector.add(1)
        collector.add(2)
        await turns()
        collector.add(3)
        settler.finish(0)
        await turns()
        assert settler.batches == [[1, 2]], "the next batch started before its linger was over"
        collector.add(4)
        await turns()
        assert settler.batches == [[1, 2], [3, 4]]


async def test_a_due_batch_grows_while_it_waits_for_a_slot_and_starts_when_one_frees() -> None:
    async with batches(linger_seconds=0.02) as (collector, settler):
        collector.add(1)
        await settler.started(1)
        collector.add(2)
        await asyncio.sleep(0.1)  # its linger is over, but the one slot is taken
        collector.add(3)
        await turns()
        assert settler.batches == [[1]]
        settler.finish(0)
        await turns()
        assert settler.batches == [[1], [2, 3]]


async def test_the_limit_of_batches_at_once_holds() -> None:
    async with batches(size=1, concurrent=2) as (collector, settler):
        for item in (1, 2, 3):
            collector.add(item)
        await turns()
        assert settler.batches == [[1], [2]]
        settler.finish(1)
        await turns()
        assert settler.batches == [[1], [2], [3]]


async def test_start_all_starts_everything_whatever_is_running() -> None:
    async with batches(size=2) as (collector, settler):
        for item in (1, 2, 3, 4, 5):
            collector.add(item)
        await turns()
        assert settler.batches == [[1, 2]]
        collector.start_all()
        await turns()
        assert settler.batches == [[1, 2], [3, 4], [5]]
        assert len(collector.running) == 3
