"""Session-wide access to the real services; see tests/services.py for how they are found."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.services import Services, service_urls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# pytester: tests/suite runs small suites of its own. service_control: the one way to stop or
# reconfigure a shared service, refused to a test not marked disruptive. clusters: RabbitMQ and
# Postgres clusters of a test's own, for failover tests.
pytest_plugins = ("pytester", "tests.service_control", "tests.clusters.fixtures")


@pytest.fixture(scope="session")
async def services() -> AsyncIterator[Services]:
    with service_urls() as (postgres, rabbitmq):
        found = Services(postgres_admin_url=postgres, rabbitmq_url=rabbitmq)
        try:
            yield found
        finally:
            await found.clean_up()
