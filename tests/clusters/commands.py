"""Running the services' command-line tools (the test clusters', and the local services' in
service_control): bounded in time, and failing with their output."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from tests.e2e.stack import alive

if TYPE_CHECKING:
    from collections.abc import Mapping

COMMAND_TIMEOUT_SECONDS = 90.0
# A SIGKILLed process is gone within milliseconds unless the kernel is stuck on its I/O.
KILL_SECONDS = 30.0


class CommandFailed(RuntimeError):
    """A cluster tool exited non-zero; the message carries its command line and output."""


async def run(
    *command: str,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = COMMAND_TIMEOUT_SECONDS,
) -> str:
    """The stdout of `command`, raising CommandFailed with its stderr when it fails or is still
    running after `timeout_seconds`."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CommandFailed(f"{' '.join(command)} still running after {timeout_seconds}s") from None
    if process.returncode != 0:
        output = (stderr or stdout).decode(errors="replace").strip()
        raise CommandFailed(f"{' '.join(command)} exited {process.returncode}: {output}")
    return stdout.decode(errors="replace")


async def kill_and_wait(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone (it may not be our child, so poll /proc)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + KILL_SECONDS
    while alive(pid):
        if loop.time() > deadline:
            raise RuntimeError(f"process {pid} survived SIGKILL for {KILL_SECONDS}s")
        await asyncio.sleep(0.02)
