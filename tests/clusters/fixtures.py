"""The cluster fixtures (a pytest plugin, loaded by tests/conftest.py).

`rabbitmq_cluster`: three clustered nodes, started once per session (about 20 s), repaired
before each test (partitions healed, stopped or killed nodes started again), so every test
starts from a healthy cluster whatever the previous one broke. Tests use queues of their own.
`postgres_replication`: a primary with a synchronous standby, new for each test (about 2 s):
a failover promotes the standby for good, and rebuilding costs less than repairing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from tests.availability import require_root
from tests.clusters.partitions import Partitions
from tests.clusters.postgres_replication import PostgresReplication
from tests.clusters.rabbitmq_cluster import RabbitCluster

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(scope="session")
async def _rabbitmq_cluster_of_the_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RabbitCluster]:
    require_root("the nodes run in cgroups of their own, cut apart by iptables rules")
    await Partitions.sweep_stale()
    run_id = uuid.uuid4().hex[:8]
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq-cluster"), run_id, Partitions(run_id))
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
async def rabbitmq_cluster(_rabbitmq_cluster_of_the_session: RabbitCluster) -> RabbitCluster:
    """Three running, clustered nodes with no partition, however the last test left them."""
    await _rabbitmq_cluster_of_the_session.repair()
    return _rabbitmq_cluster_of_the_session


@pytest.fixture
async def postgres_replication() -> AsyncIterator[PostgresReplication]:
    """A fresh primary streaming synchronously to a standby."""
    require_root("Postgres runs as the postgres user, through runuser")
    await PostgresReplication.sweep_stale()
    pair = PostgresReplication()
    try:
        await pair.start()
        yield pair
    finally:
        await pair.close()
