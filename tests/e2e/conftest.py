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
    from tests.services import Services


@contextlib.asynccontextmanager
async def _stack_on(services: Services, tmp_path: Path, database_url: str) -> AsyncIterator[Stack]:
    built = Stack(
        tmp_path=tmp_path,
        database_url=database_url,
        broker_url=services.rabbitmq_url,
        namespace=services.new_namespace(RETRY_TIERS),
    )
    try:
        yield built
    finally:
        built.stop_all()
        await services.release_namespace(built.namespace)


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
