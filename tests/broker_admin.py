"""Breaking broker connections on purpose, as `rabbitmqctl` lets an operator do."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _rabbitmqctl(*args: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on this machine (broker in a container)")
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def close_connections(name_contains: str) -> int:
    """Close every connection whose client-given name contains the text; returns how many."""
    # One line per connection: its pid, a tab, then its client properties (which hold the
    # connection_name) as an Erlang term. JSON output would name pids in a form
    # close_connection does not accept.
    listed = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    closed = 0
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        if name_contains in properties:
            _rabbitmqctl("close_connection", pid, "closed by a payouts test")
            closed += 1
    return closed
