"""The loop long-running commands run on: uvloop where installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import uvloop

from workers import event_loop

if TYPE_CHECKING:
    import pytest


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_runs_on_uvloop_where_it_is_installed() -> None:
    assert isinstance(event_loop.run(_running_loop()), uvloop.Loop)


def test_falls_back_to_asyncios_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    loop = event_loop.run(_running_loop())
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)
