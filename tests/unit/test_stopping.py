"""A stop obeyed while a worker still waits for a service at start-up."""

from __future__ import annotations

import asyncio

from workers.stopping import unless_stopped


async def test_the_work_s_result_when_it_finishes_first() -> None:
    async def connect() -> str:
        return "connection"

    assert await unless_stopped(connect(), asyncio.Event()) == "connection"


async def test_nothing_and_the_work_cancelled_when_the_stop_comes_first() -> None:
    cancelled = asyncio.Event()

    async def retry_forever() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(unless_stopped(retry_forever(), stop), 5) is None
    assert cancelled.is_set()


async def test_a_stop_already_set_wins_over_work_still_to_do() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await unless_stopped(asyncio.sleep(3600, "late"), stop) is None


async def test_cancelling_the_wait_cancels_the_work() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def retry_forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(unless_stopped(retry_forever(), asyncio.Event()))
    await started.wait()
    waiting.cancel()
    await asyncio.wait([waiting])
    await asyncio.wait_for(cancelled.wait(), 5)
