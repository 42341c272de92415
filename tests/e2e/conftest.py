"""Each end-to-end test gets its own database, broker namespace and processes."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.e2e.stack import RETRY_TIERS, Stack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.clusters.postgres_replication import PostgresReplication
    from tests.clusters.rabbitmq_cluster import RabbitCluster
    from tests.services import Services


@contextlib.asynccontextmanager
async def _stack_on(
    services: Services,
    tmp_path: Path,
    database_url: str,
    broker_url: str | None = None,
    node_order: str = "shuffled",
) -> AsyncIterator[Stack]:
    built = Stack(
        tmp_path=tmp_path,
        database_url=database_url,
        broker_url=broker_url or services.rabbitmq_url,
        namespace=services.new_namespace(RETRY_TIERS),
        node_order=node_order,
    )
    try:
        yield built
    finally:
        built.stop_all()
        await services.release_namespace(built.namespace, broker_url)


@pytest.fixture
async def stack(services: Services, tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack_on(services, tmp_path, await services.new_database()) as built:
        yield built


@pytest.fixture
async def replicated_stack(
    services: Services, tmp_path: Path, postgres_replication: PostgresReplication
) -> AsyncIterator[Stack]:
    """A stack whose database is on a primary with a synchronous standby, reached through the
    multi-host URL (the stack's database_url) that follows a promotion."""
    database_url = await postgres_replication.create_database("payouts")
    async with _stack_on(services, tmp_path, database_url) as built:
        yield built


@pytest.fixture
async def cluster_stack(
    services: Services, tmp_path: Path, rabbitmq_cluster: RabbitCluster
) -> AsyncIterator[Stack]:
    """A stack whose broker is the three-node cluster: its processes get every node (the
    stack's broker_url lists them, separated by commas) and try them in the order listed, so a
    test puts them on the node it means to fail by naming that one first."""
    nodes = ",".join(rabbitmq_cluster.amqp_urls)
    database_url = await services.new_database()
    async with _stack_on(services, tmp_path, database_url, nodes, "listed") as built:
        yield built
