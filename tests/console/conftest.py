"""A fresh, migrated database per console test, and for the dead-letter pages a RabbitMQ
namespace of the test's own beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.integration.test_dead_letters import Scene

if TYPE_CHECKING:
    from pathlib import Path

    from tests.services import Services


@pytest.fixture
async def database_url(services: Services) -> str:
    return await services.new_database()


@pytest.fixture
def scene(services: Services, database_url: str, tmp_path: Path) -> Scene:
    return Scene(services, database_url, tmp_path)
