"""Broker failover runs: the pipeline on a three-node RabbitMQ cluster under steady provider
traffic while a node is killed, cut off or restarted in turn, then the fault runs'
reconciliation. Lost, duplicated and unexpected must be zero, providers must have been told only
"accepted" or "try again", and each fault prints its `RECOVERY` line (report_recovery)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from schema.logs import redacted_url
from schema.topology import Topology
from tests.e2e.fault_runs import (
    BURST,
    CREDITED_SINCE,
    PAYOUTS_PER_SECOND,
    TRAFFIC_SECONDS,
    ConfirmWatch,
    assert_failover_clean,
    connected_to,
    report_recovery,
)
from tests.e2e.provider import ProviderSimulator, WalletPlatform
from tests.e2e.stack import RETRY_TIERS
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.clusters.rabbitmq_cluster import RabbitCluster, RabbitNode
    from tests.e2e.stack import Process, Stack

pytestmark = pytest.mark.cluster

# A partitioned node pauses (pause_minority) only after net_ticktime (10 s) and the ticks it
# waits out; its clients move after that.
RECOVERY_SECONDS = 60.0
# Traffic flowing before each fault, so the stalls measured start from steady state.
STEADY_SECONDS = 3.0
# A restarted node boots, rejoins and its queue members catch up within this.
REJOIN_SECONDS = 120.0


@dataclass
class Fault:
    """One fault of a run: `strike` it, wait for a credit after it, then `repair`, which returns
    once the cluster is whole again (node rejoined, the queue's members all in step)."""

    scenario: str
    strike: Callable[[], Awaitable[None]]
    repair: Callable[[], Awaitable[None]]


class ClusterRun:
    """The stack's processes on a chosen node of the cluster, and the checks around faults."""

    def __init__(self, stack: Stack, cluster: RabbitCluster) -> None:
        self.stack, self.cluster = stack, cluster
        self.work_queue = Topology(stack.namespace, RETRY_TIERS).work_queue
        self.workers: list[Process] = []

    async def declare(self) -> RabbitNode:
        """The stack's topology declared on the cluster (`payouts migrate`), its work queue
        replicated on all three nodes; returns the node leading that queue."""
        migrated = await asyncio.to_thread(self.stack.run, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        members = await self.cluster.quorum_members(self.work_queue)
        assert len(members) == 3, f"work queue members: {[m.name for m in members]}"
        leader = await self.cluster.quorum_leader(self.work_queue)
        assert leader is not None, "the work queue has no leader"
        return leader

    async def start_on(self, node: RabbitNode, workers: int = 2) -> None:
        """The ingress and the workers, each listing `node` first (the stack's node order is
        "listed"), and shown to be connected to it."""
        others = [url for url in self.cluster.amqp_urls if url != node.url]
        nodes = ",".join([node.url, *others])
        await self.stack.start_ingress(broker_url=nodes)
        for _ in range(workers):
            self.workers.append(await self.stack.start_worker(broker_url=nodes))
        assert await self.all_on(node), f"not every process connected to {node.name}"

    def _status_urls(self) -> list[tuple[str, str]]:
        workers = [("worker", f"http://127.0.0.1:{w.status_port}") for w in self.workers]
        return [("ingress", self.stack.base_url), *workers]

    async def all_on(self, node: RabbitNode) -> bool:
        for role, url in self._status_urls():
            if not await connected_to(url, role, redacted_url(node.url)):
                return False
        return True

    async def all_off(self, node: RabbitNode) -> bool:
        """Every process connected, to another node than `node`."""
        survivors = [n for n in self.cluster.nodes if n is not node]
        for role, url in self._status_urls():
            held = [await connected_to(url, role, redacted_url(n.url)) for n in survivors]
            if not any(held):
                return False
        return True

    async def start_again(self, node: RabbitNode) -> None:
        """Once every process has left `node` (killed or stopped), start it and wait until it
        has rejoined."""
        await wait_until(lambda: self.all_off(node), f"every process off {node.name}", 30)
        await self.cluster.start_node(node)
        await self.rejoined(node)

    async def rejoined(self, node: RabbitNode) -> None:
        """`node` running again, in the cluster, and every member of the work queue in step."""

        async def whole() -> bool:
            in_step = await self.cluster.quorum_members_in_step(self.work_queue)
            return await self.cluster.is_running(node) and len(in_step) == 3

        await self.cluster.await_online(node)
        await wait_until(
            whole, f"{node.name} back and the work queue's members in step", REJOIN_SECONDS
        )

    async def run_through(self, faults: list[Fault], *, seed: int, wallets: bool) -> None:
        """Traffic from the query protocols' providers (and spec 001's platform, waiting for
        outcomes, with `wallets`) through `faults` one after the other, then the checks."""
        stack = self.stack
        provider = ProviderSimulator(stack, seed)
        platform = WalletPlatform(stack, seed + 1)
        confirms = ConfirmWatch(stack.base_url)
        spans: list[tuple[str, datetime, datetime]] = []
        async with contextlib.AsyncExitStack() as traffic:
            await traffic.enter_async_context(confirms.watching())
            if wallets:
                await traffic.enter_async_context(platform.traffic())
            await traffic.enter_async_context(
                provider.traffic(PAYOUTS_PER_SECOND, TRAFFIC_SECONDS, burst=BURST)
            )
            await self._credited_since(datetime.now(UTC), "first credits before the faults")
            for fault in faults:
                # Steady traffic for longer than the stalls look back (LOOK_BEFORE).
                await asyncio.sleep(STEADY_SECONDS)
                fault_at = datetime.now(UTC)
                await fault.strike()
                await self._credited_since(fault_at, f"a credit after {fault.scenario}")
                await fault.repair()
                spans.append((fault.scenario, fault_at, datetime.now(UTC)))
        for scenario, fault_at, over_at in spans:
            await report_recovery(stack, scenario, fault_at, over_at, confirms)
        await assert_failover_clean(stack, provider, provider.payouts + platform.payouts)
        for process in stack.processes:
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.troubles()}"

    async def _credited_since(self, moment: datetime, what: str) -> None:
        async def credited() -> bool:
            return await self.stack.fetchval(CREDITED_SINCE, moment) is not None

        await wait_until(credited, what, RECOVERY_SECONDS)


@pytest.mark.parametrize("clients_on", ["follower", "leader"])
async def test_work_queue_leader_killed_then_started_again_under_load(
    cluster_stack: Stack, rabbitmq_cluster: RabbitCluster, clients_on: str
) -> None:
    """kill -9 of the node leading the work queue, with the ingress and the workers on another
    node (only the queue's leader moves) or on that node itself (they move too), then the node
    started again while traffic goes on. Both answer paths meet it: the query protocols and
    spec 001's, which waits for the outcome."""
    run = ClusterRun(cluster_stack, rabbitmq_cluster)
    leader = await run.declare()
    followers = [node for node in rabbitmq_cluster.nodes if node is not leader]
    await run.start_on(leader if clients_on == "leader" else followers[0])

    async def kill() -> None:
        await rabbitmq_cluster.kill_node(leader)

    async def start_again() -> None:
        await run.start_again(leader)

    fault = Fault(f"leader-killed-clients-on-{clients_on}", kill, start_again)
    await run.run_through([fault], seed=31, wallets=True)


async def test_node_leading_the_queue_and_holding_the_clients_cut_off_then_healed(
    cluster_stack: Stack, rabbitmq_cluster: RabbitCluster
) -> None:
    """The harsher of the two partitions: the node cut off both leads the work queue and holds
    every process's connection. A killed node's clients see their connection refused at once;
    these see a node that is up and accepts their publishes but cannot commit them (no
    majority) and delivers nothing, until pause_minority pauses it (net_ticktime, 10 s here)
    and closes their connections. Meanwhile publishes time out (answered "try again") and the
    majority elects a leader the consumers cannot reach."""
    run = ClusterRun(cluster_stack, rabbitmq_cluster)
    leader = await run.declare()
    await run.start_on(leader)

    async def isolate() -> None:
        await rabbitmq_cluster.isolate(leader)

    async def heal() -> None:
        await wait_until(lambda: run.all_off(leader), f"every process off {leader.name}", 30)
        assert not await rabbitmq_cluster.is_running(leader), "the minority never paused"
        await rabbitmq_cluster.heal()

        async def unpaused() -> bool:
            return await rabbitmq_cluster.is_running(leader)

        await wait_until(unpaused, f"{leader.name} running after the heal", RECOVERY_SECONDS)
        await run.rejoined(leader)

    fault = Fault("leader-and-clients-node-partitioned", isolate, heal)
    await run.run_through([fault], seed=41, wallets=True)


async def test_rolling_restart_of_the_three_nodes_under_load(
    cluster_stack: Stack, rabbitmq_cluster: RabbitCluster
) -> None:
    """Each node stopped and started in turn, as an upgrade does, waiting for it to rejoin and
    for the work queue's members to be back in step before the next. The processes start on
    the first node; each stop that meets them moves them on. Query protocols only."""
    run = ClusterRun(cluster_stack, rabbitmq_cluster)
    await run.declare()
    await run.start_on(rabbitmq_cluster.nodes[0])

    def restart(node: RabbitNode) -> Fault:
        async def stop() -> None:
            await rabbitmq_cluster.stop_node(node)

        async def start() -> None:
            await run.start_again(node)

        return Fault(f"rolling-restart-{node.letter}", stop, start)

    await run.run_through(
        [restart(node) for node in rabbitmq_cluster.nodes], seed=51, wallets=False
    )
