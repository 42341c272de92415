"""Each end-to-end test gets its own database, broker namespace and processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.e2e.stack import RETRY_TIERS, Stack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.services import Services


@pytest.fixture
async def stack(services: Services, tmp_path: Path) -> AsyncIterator[Stack]:
    built = Stack(
        tmp_path=tmp_path,
        database_url=await services.new_database(),
        broker_url=services.rabbitmq_url,
        namespace=services.new_namespace(RETRY_TIERS),
    )
    try:
        yield built
    finally:
        built.stop_all()
        await services.release_namespace(built.namespace)
