"""Breaking one run's broker on purpose: its connections closed, as `rabbitmqctl` lets an
operator do, or a queue of its own that refuses messages."""

from __future__ import annotations

import contextlib
import re
import subprocess
from typing import TYPE_CHECKING

import aio_pika

from tests.availability import require_tool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractQueue

# broker/connection.py names each connection "payouts-<role> <namespace> pid=<pid>"; rabbitmqctl
# shows it among the client properties as {"connection_name","..."}.
_CONNECTION_NAME = re.compile(r'\{"connection_name","payouts-([\w-]+) (\S+) pid=')


def _rabbitmqctl(*args: str) -> str:
    rabbitmqctl = require_tool("rabbitmqctl", "the broker is not local (in a container)")
    done = subprocess.run(
        [rabbitmqctl, "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def close_connections(namespace: str, role: str | None = None) -> int:
    """Close the connections of `namespace` (only those of `role`, if given), never another
    run's; returns how many."""
    # One line per connection: its pid, a tab, then its client properties as an Erlang term.
    # JSON output would name pids in a form close_connection does not accept.
    listed = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    closed = 0
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        name = _CONNECTION_NAME.search(properties)
        if name and name[2] == namespace and role in (None, name[1]):
            _rabbitmqctl("close_connection", pid, "closed by a payouts test")
            closed += 1
    return closed


@contextlib.asynccontextmanager
async def refusing_queue(url: str, name: str, max_length: int = 0) -> AsyncIterator[AbstractQueue]:
    """A queue `name`, on a connection of its own, that holds `max_length` messages and refuses
    any more: the broker nacks a publish routed to it then. Gone when the block ends."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        yield await channel.declare_queue(
            name,
            exclusive=True,
            arguments={"x-max-length": max_length, "x-overflow": "reject-publish"},
        )
