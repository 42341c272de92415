"""A broker node lost under load: the ingress and a worker listed on two nodes (two proxies in
front of the one local RabbitMQ) move to the other node when theirs is cut, and providers are
told nothing but accepted or "try again"."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from schema.logs import redacted_url
from tests.e2e.fault_runs import connected_to, settle
from tests.e2e.provider import ProviderSimulator, reconcile
from tests.polling import wait_until
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

PAYOUTS_PER_SECOND = 25.0
TRAFFIC_SECONDS = 4.0


async def test_a_node_cut_under_load_moves_ingress_and_worker_to_the_other(stack: Stack) -> None:
    first = await TcpProxy.in_front_of(stack.broker_url)
    second = await TcpProxy.in_front_of(stack.broker_url)
    nodes = [proxy.url_through(stack.broker_url) for proxy in (first, second)]
    # Listed, so that both processes start on the node the test cuts.
    stack.node_order = "listed"
    stack.write_config()
    try:
        await stack.start_ingress(broker_url=",".join(nodes))
        worker = await stack.start_worker(broker_url=",".join(nodes))
        worker_status = f"http://127.0.0.1:{worker.status_port}"
        assert await connected_to(stack.base_url, "ingress", redacted_url(nodes[0]))
        assert await connected_to(worker_status, "worker", redacted_url(nodes[0]))

        provider = ProviderSimulator(stack, seed=23)
        async with provider.traffic(PAYOUTS_PER_SECOND, TRAFFIC_SECONDS, burst=4):
            await asyncio.sleep(1.5)
            await first.cut()

            async def moved() -> bool:
                return await connected_to(
                    stack.base_url, "ingress", redacted_url(nodes[1])
                ) and await connected_to(worker_status, "worker", redacted_url(nodes[1]))

            await wait_until(moved, "the ingress and the worker on the second node", 10)
        await settle(stack)
        result = await reconcile(stack, provider.payouts)
    finally:
        await first.close()
        await second.close()
    result.assert_clean()
    assert set(result.details["answers"]) <= {200, 503}, result.details["answers"]
