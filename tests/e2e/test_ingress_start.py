"""`payouts ingress` that cannot start serving exits non-zero with one error line naming why,
in one process or several, so that compose, Kubernetes or a shell script sees the failure.

The ingress has no TLS settings (TLS ends at the load balancer or ingress controller in
front), so the start-up failures uvicorn can hit here are the listening address's."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.stack import free_port

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

# An address of TEST-NET-1 (RFC 5737): documentation only, so on no interface of this host.
NOT_HERE = "192.0.2.1"


def _error_line(stderr: str) -> dict[str, Any]:
    """The last line, which must be the command's structured error."""
    line: dict[str, Any] = json.loads(stderr.strip().splitlines()[-1])
    return line


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_port_already_taken_ends_the_command_with_exit_1_naming_it(
    stack: Stack, processes: int
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = stack.run("ingress", "--port", str(port), "--processes", str(processes))
    assert done.returncode == 1, done.stderr
    error = _error_line(done.stderr)
    assert (error["level"], error["message"]) == ("error", "ingress did not start")
    assert error["address"] == f"127.0.0.1:{port}"
    assert "address already in use" in error["error"].lower(), error


@pytest.mark.parametrize("processes", [1, 2])
async def test_an_address_not_on_this_host_ends_the_command_with_exit_1_naming_it(
    stack: Stack, processes: int
) -> None:
    port = free_port()
    done = stack.run(
        "ingress", "--host", NOT_HERE, "--port", str(port), "--processes", str(processes)
    )
    assert done.returncode == 1, done.stderr
    error = _error_line(done.stderr)
    assert error["message"] == "ingress did not start"
    assert error["address"] == f"{NOT_HERE}:{port}"
    assert "cannot assign requested address" in error["error"].lower(), error


async def test_several_processes_missing_a_secret_exit_2_instead_of_restarting_forever(
    stack: Stack,
) -> None:
    """Each process would fail to build the app, and uvicorn's supervisor replaces a process that
    dies of anything but its own start-up failure code: the command checks the app first."""
    env = {**stack.env(), "E2E_OFFERWALL_KEY": ""}
    done = stack.run("ingress", "--port", str(free_port()), "--processes", "2", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("payouts: configuration error:"), done.stderr
    assert "E2E_OFFERWALL_KEY" in done.stderr
