"""A secret rotated under provider traffic as docs/operations.md tells an operator to: two
ingress processes behind a load balancer, each restarted in turn with the next configuration,
the provider switching keys in the middle. No correctly signed callback is refused or lost."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import TYPE_CHECKING

import httpx

from tests.e2e.fault_runs import settle
from tests.e2e.provider import ProviderSimulator, reconcile
from tests.e2e.stack import OFFERWALL_KEY, OFFERWALL_KEY_NEXT, free_port
from tests.e2e.test_observability import log_lines
from tests.load_balancer import RoundRobinBalancer
from tests.signing import offerwall_query

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.stack import Process, Stack

# secret_env of the offerwall instances at each step of the rotation.
STEPS = (
    '"E2E_OFFERWALL_KEY"',
    '["E2E_OFFERWALL_KEY", "E2E_OFFERWALL_KEY_NEXT"]',
    '"E2E_OFFERWALL_KEY_NEXT"',
)


def config_at(stack: Stack, step: int) -> Path:
    text = stack.config_path.read_text()
    current = 'secret_env = "E2E_OFFERWALL_KEY"'
    assert current in text
    path = stack.tmp_path / f"rotation-step-{step}.toml"
    path.write_text(text.replace(current, f"secret_env = {STEPS[step]}"))
    return path


async def restart_one_by_one(
    stack: Stack, balancer: RoundRobinBalancer, running: dict[int, Process], config: Path
) -> dict[int, Process]:
    replacements = {}
    for port, process in running.items():
        await balancer.take_out(port)
        # uvicorn re-raises SIGTERM once it has shut down cleanly.
        assert await asyncio.to_thread(process.stop) in (0, -signal.SIGTERM), process.log()
        assert "Application shutdown complete." in process.log()
        new_port = free_port()
        replacements[new_port] = await stack.start_ingress(config=config, port=new_port)
        balancer.add(new_port)
    return replacements


async def test_a_secret_rotated_under_traffic_refuses_no_callback(stack: Stack) -> None:
    balancer = RoundRobinBalancer()
    await balancer.start()
    try:
        running = {}
        for _ in range(2):
            port = free_port()
            running[port] = await stack.start_ingress(config=config_at(stack, 0), port=port)
            balancer.add(port)
        await stack.start_worker()
        provider = ProviderSimulator(
            stack, seed=61, base_url=f"http://127.0.0.1:{balancer.port}", keep_alive=False
        )
        signed_with_old_key = asyncio.create_task(provider.run(200, 8.0))
        running = await restart_one_by_one(stack, balancer, running, config_at(stack, 1))
        provider.offerwall_key = OFFERWALL_KEY_NEXT  # the operator switched it at the provider
        signed_with_new_key = asyncio.create_task(provider.run(200, 8.0))
        # Retire the old secret only once nothing signed with it is still being sent.
        await signed_with_old_key
        await restart_one_by_one(stack, balancer, running, config_at(stack, 2))
        await signed_with_new_key

        params = {"user_id": "late", "amount": "1", "trans_id": "signed-with-the-old-key"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{balancer.port}") as client:
            query = offerwall_query(params, OFFERWALL_KEY)
            retired = await client.get(f"/callbacks/offerwall?{query}")
    finally:
        await balancer.close()

    answers = Counter(answer for payout in provider.payouts for answer in payout.answers)
    assert set(answers) == {200}, answers
    assert retired.status_code == 403
    matched = Counter(
        line.get("secret")
        for process in stack.processes
        if process.name == "ingress"
        for line in log_lines(process)
        if line.get("message") == "callback answered" and line.get("verdict") == "accepted"
    )
    assert matched["E2E_OFFERWALL_KEY"] > 0, matched
    assert matched["E2E_OFFERWALL_KEY_NEXT"] > 0, matched
    await settle(stack)
    (await reconcile(stack, provider.payouts)).assert_clean()
