"""A fresh, migrated database per console test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.services import Services


@pytest.fixture
async def database_url(services: Services) -> str:
    return await services.new_database()
