"""A fresh, migrated database per test, and a pool on it; a broker namespace per test, and a
publisher on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import pytest

from broker.publisher import ConfirmedPublisher
from schema.settings import BrokerSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services

# Short retry tiers, so that a test sees a message walk through them in seconds.
SHORT_TIERS = (1, 2)


@pytest.fixture
async def database_url(services: Services) -> str:
    return await services.new_database()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def broker_settings(services: Services) -> AsyncIterator[BrokerSettings]:
    """A namespace of the test's own, with short retry tiers; deleted after the test."""
    settings = BrokerSettings(
        urls=(services.rabbitmq_url,),
        namespace=services.new_namespace(SHORT_TIERS),
        retry_delays_seconds=SHORT_TIERS,
        publish_timeout_seconds=3,
    )
    try:
        yield settings
    finally:
        await services.release_namespace(settings.namespace)


@pytest.fixture
async def publisher(broker_settings: BrokerSettings) -> AsyncIterator[ConfirmedPublisher]:
    """A confirming publisher on the test's namespace, connected: the topology is declared."""
    started = ConfirmedPublisher(broker_settings, "test")
    started.start()
    try:
        await started.wait_ready()
        yield started
    finally:
        await started.close()
