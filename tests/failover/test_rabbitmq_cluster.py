"""The three-node RabbitMQ cluster fixture does what failover tests rely on."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

import aio_pika
import aiormq
import pytest

from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.clusters.rabbitmq_cluster import RabbitCluster, RabbitNode

pytestmark = pytest.mark.cluster
# A partitioned node notices after net_ticktime (10 s) plus the ticks it waits out.
PAUSE_SECONDS = 60


async def declare_quorum_queue(url: str) -> str:
    name = f"cluster-smoke-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            name,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 3},
        )
    return name


async def publish_confirmed(url: str, queue: str, body: bytes) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()  # publisher confirms on
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue
        )
        assert isinstance(confirmation, aiormq.spec.Basic.Ack), confirmation


async def queue_holding(cluster: RabbitCluster, body: bytes) -> str:
    """A new quorum queue on all three nodes holding one confirmed message."""
    queue = await declare_quorum_queue(cluster.amqp_urls[0])
    await publish_confirmed(cluster.amqp_urls[0], queue, body)
    return queue


async def bodies_in(url: str, queue: str) -> list[bytes]:
    connection = await aio_pika.connect(url)
    async with connection:
        declared = await (await connection.channel()).get_queue(queue, ensure=False)
        bodies = []
        while (message := await declared.get(fail=False)) is not None:
            bodies.append(message.body)
            await message.ack()
        return bodies


async def running_nodes(cluster: RabbitCluster, asked: RabbitNode) -> set[str]:
    status = json.loads(
        await cluster.ctl("rabbitmqctl", asked, "cluster_status", "--formatter", "json")
    )
    return set(status["running_nodes"])


async def test_three_nodes_and_a_quorum_queue_replicated_on_each(
    rabbitmq_cluster: RabbitCluster,
) -> None:
    cluster = rabbitmq_cluster
    names = {node.name for node in cluster.nodes}
    assert len(names) == 3
    assert await running_nodes(cluster, cluster.nodes[0]) == names
    queue = await declare_quorum_queue(cluster.amqp_urls[0])
    assert {node.name for node in await cluster.quorum_members(queue)} == names


async def test_leader_killed_a_new_one_is_elected_and_publishes_confirm(
    rabbitmq_cluster: RabbitCluster,
) -> None:
    cluster = rabbitmq_cluster
    queue = await queue_holding(cluster, b"before")
    leader = await cluster.quorum_leader(queue)
    assert leader is not None
    survivor = next(node for node in cluster.nodes if node is not leader)

    killed_at = time.monotonic()
    await cluster.kill_node(leader)

    async def another_leader() -> bool:
        return (await cluster.quorum_leader(queue)) not in (None, leader)

    await wait_until(another_leader, f"a leader other than {leader.name}")
    elected = time.monotonic() - killed_at
    await publish_confirmed(survivor.url, queue, b"after")
    print(f"\nnew quorum leader {elected:.2f}s after kill -9 of {leader.name}")

    await cluster.start_node(leader)
    await cluster.await_online(survivor)
    assert leader.name in await running_nodes(cluster, survivor)
    assert await bodies_in(survivor.url, queue) == [b"before", b"after"]


async def test_rolling_restart_keeps_the_cluster_and_its_messages(
    rabbitmq_cluster: RabbitCluster,
) -> None:
    cluster = rabbitmq_cluster
    queue = await queue_holding(cluster, b"kept")
    began = time.monotonic()
    await cluster.rolling_restart()
    print(f"\nrolling restart of 3 nodes: {time.monotonic() - began:.1f}s")
    assert await running_nodes(cluster, cluster.nodes[0]) == {n.name for n in cluster.nodes}
    assert await bodies_in(cluster.amqp_urls[2], queue) == [b"kept"]


async def test_partitioned_node_pauses_then_rejoins_when_healed(
    rabbitmq_cluster: RabbitCluster,
) -> None:
    cluster = rabbitmq_cluster
    *majority, minority = cluster.nodes
    began = time.monotonic()
    await cluster.isolate(minority)

    async def minority_paused() -> bool:
        return not await cluster.is_running(minority)

    await wait_until(minority_paused, f"{minority.name} paused (pause_minority)", PAUSE_SECONDS)
    paused = time.monotonic() - began
    for node in majority:
        assert await cluster.is_running(node), f"{node.name} of the majority paused too"
    queue = await declare_quorum_queue(majority[0].url)  # the majority still serves
    await publish_confirmed(majority[1].url, queue, b"during")

    began = time.monotonic()
    await cluster.heal()

    async def minority_back() -> bool:
        return await cluster.is_running(minority)

    await wait_until(minority_back, f"{minority.name} running after the heal", PAUSE_SECONDS)
    await cluster.await_online(majority[0])
    healed = time.monotonic() - began
    print(f"\nminority paused {paused:.1f}s after the cut; running {healed:.1f}s after heal")
    assert await running_nodes(cluster, minority) == {n.name for n in cluster.nodes}
