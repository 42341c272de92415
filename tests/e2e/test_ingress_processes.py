"""`payouts ingress --processes N`: N real processes sharing the callback port, one killed and
replaced without the port going dark, and /metrics counting the answers of all of them and
reporting the connections of the living ones. Several ingress commands, each receiving only the
outcomes of its own callbacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.e2e.fault_runs import settle
from tests.e2e.provider import ProviderSimulator, aigame_fields, reconcile
from tests.e2e.stack import AIGAME_KEY, alive, free_port
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from tests.signing import aigame_payout_body
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    import pytest

    from tests.e2e.stack import Process, Stack


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


async def kill_and_wait_until_replaced(ingress: Process, killed: int) -> None:
    """SIGKILL serving process `killed`; return once uvicorn serves with a replacement."""
    os.kill(killed, signal.SIGKILL)

    async def replaced() -> bool:
        serving = serving_children(ingress.popen.pid)
        return len(serving) == 2 and killed not in serving

    await wait_until(replaced, f"the killed process replaced; log:\n{ingress.log()}")


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

    await kill_and_wait_until_replaced(ingress, min(first_children))
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


def broker_connected_by_process(directory: Path) -> dict[int, float]:
    """What each process last wrote to its own file in the multiprocess directory."""
    written = {}
    for path in directory.glob("gauge_livemin_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, _timestamp, _position in values:
            if json.loads(key)[0] == "payouts_ingress_broker_connected":
                written[int(path.stem.rpartition("_")[2])] = value
    return written


async def test_a_process_killed_while_disconnected_does_not_hold_the_gauge_at_zero(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))  # the operator's own
    proxy = await TcpProxy.in_front_of(stack.broker_url)
    try:
        ingress = await stack.start_ingress(
            broker_url=proxy.url_through(stack.broker_url), processes=2
        )
        children = serving_children(ingress.popen.pid)
        assert len(children) == 2, ingress.log()
        async with httpx.AsyncClient(base_url=stack.base_url) as prometheus:

            async def broker_connected() -> bool:
                return (await connection_gauges(prometheus))[0] == 1

            # Not held at 0 by the supervisor either: with the operator's directory set, it wrote
            # its own gauges there when it imported the app.
            await wait_until(broker_connected, f"both processes connected; log:\n{ingress.log()}")
            await proxy.cut()

            async def every_process_wrote_disconnected() -> bool:
                written = broker_connected_by_process(directory)
                return all(written.get(pid) == 0 for pid in children)

            await wait_until(every_process_wrote_disconnected, "every process reporting 0")
            killed = min(children)
            await kill_and_wait_until_replaced(ingress, killed)
            await proxy.restore()

            # The replacement and the survivor reconnect; the dead process's 0 must not count.
            await wait_until(broker_connected, "connected again, the killed process forgotten")
        assert killed not in broker_connected_by_process(directory)
    finally:
        await proxy.close()


async def test_a_replaced_process_runs_the_settings_validated_at_start(stack: Stack) -> None:
    """The configuration file edited, even broken, after the start (a ConfigMap updates in place)
    does not reach a process that replaces a dead one: it runs what its sibling runs."""
    ingress = await stack.start_ingress(processes=2)
    first_children = serving_children(ingress.popen.pid)
    assert len(first_children) == 2, ingress.log()
    stack.config_path.write_text("[database\nnot toml at all\n")

    await kill_and_wait_until_replaced(ingress, min(first_children))
    replacement = (serving_children(ingress.popen.pid) - first_children).pop()
    await asyncio.sleep(2)  # a replacement that cannot load its settings dies within this
    assert alive(replacement), ingress.log()
    assert serving_children(ingress.popen.pid) == {max(first_children), replacement}
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for _ in range(20):  # new connections, spread over both processes
            response = await client.get("/readyz", headers={"Connection": "close"})
            assert response.status_code == 200, response.text
    assert ingress.stop() == 0


async def settle_payouts(base_url: str, count: int) -> list[object]:
    """Send `count` spec-001 payouts to new users at once; their answer codes."""
    now = int(time.time() * 1000)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def settle(user: str) -> object:
            fields = {**aigame_fields(user, "1", pay_out_time=now), "timestamp": now}
            body = aigame_payout_body(fields, AIGAME_KEY)
            return (await client.post("/aigame/v1/wallet/payout", json=body)).json()["code"]

        return list(
            await asyncio.gather(*(settle(f"u-{uuid.uuid4().hex[:8]}") for _ in range(count)))
        )


async def test_each_ingress_receives_only_the_outcomes_of_its_own_callbacks(stack: Stack) -> None:
    callbacks = 40
    ports = [free_port() for _ in range(3)]
    for port in ports:
        await stack.start_ingress(port=port)
    await stack.start_worker()
    codes = await asyncio.gather(
        *(settle_payouts(f"http://127.0.0.1:{port}", callbacks) for port in ports)
    )
    assert codes == [[200] * callbacks] * len(ports)
    for port in ports:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            exposition = (await client.get("/metrics")).text
        received = "payouts_ingress_outcome_reports_received_total"
        assert sample_value(exposition, received, channel="own") == callbacks
        assert sample_value(exposition, received, channel="shared") == 0
