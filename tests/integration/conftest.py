"""A fresh, migrated database per test, and a pool on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services


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
