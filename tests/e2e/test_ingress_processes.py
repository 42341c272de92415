"""`payouts ingress --processes N`: N real processes sharing the callback port, one killed and
replaced without the port going dark, and /metrics counting the answers of all of them and
reporting the connections of the living ones."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.e2e.provider import ProviderSimulator, reconcile
from tests.e2e.stack import alive
from tests.e2e.test_faults import settle
from tests.metrics_reading import sample_value
from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.e2e.stack import Stack


def serving_children(parent: int) -> set[int]:
    """The parent's child processes that serve (multiprocessing's spawned interpreters)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    serving = set()
    for child in map(int, children):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue  # exited meanwhile
        if b"multiprocessing.spawn" in command:
            serving.add(child)
    return serving


async def accepted_answers_counted(stack: Stack) -> float:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return sample_value(response.text, "payouts_ingress_requests_total", verdict="accepted")


async def test_processes_share_the_port_survive_a_kill_and_count_together(stack: Stack) -> None:
    ingress = await stack.start_ingress(processes=2)
    first_children = serving_children(ingress.popen.pid)
    assert len(first_children) == 2, ingress.log()
    provider = ProviderSimulator(stack, seed=53)
    await provider.run(60, 1.0)

    os.kill(min(first_children), signal.SIGKILL)

    async def replaced() -> bool:
        children = serving_children(ingress.popen.pid)
        return len(children) == 2 and min(first_children) not in children

    await wait_until(replaced, f"the killed process replaced; log:\n{ingress.log()}")
    await provider.run(60, 1.0)
    await stack.start_worker()
    await settle(stack)
    (await reconcile(stack, provider.payouts)).assert_clean()

    # Every process's answers, the killed one's included, whichever process renders /metrics.
    answered_ok = sum(payout.answers.count(200) for payout in provider.payouts)
    assert answered_ok >= 120
    for _ in range(4):
        assert await accepted_answers_counted(stack) == answered_ok

    assert ingress.stop() == 0
    assert not [pid for pid in first_children if alive(pid)]


async def connection_gauges(client: httpx.AsyncClient) -> tuple[float, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return (
        sample_value(response.text, "payouts_ingress_broker_connected"),
        sample_value(response.text, "payouts_ingress_outcomes_listening"),
    )


async def test_any_process_answering_a_scrape_reports_every_process_connected(
    stack: Stack,
) -> None:
    ingress = await stack.start_ingress(processes=2)

    # Prometheus keeps its connection alive, so one process answers every one of its scrapes:
    # the other process's connection state must reach the gauges without a scrape of its own.
    async with httpx.AsyncClient(base_url=stack.base_url) as prometheus:

        async def connected() -> bool:
            return await connection_gauges(prometheus) == (1, 1)

        await wait_until(connected, f"both processes reported connected; log:\n{ingress.log()}")

    for _ in range(8):
        async with httpx.AsyncClient(base_url=stack.base_url) as scraper:  # a new connection
            assert await connection_gauges(scraper) == (1, 1)
