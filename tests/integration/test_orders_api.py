"""The game's internal orders API: authenticated, idempotent, and checked against each
protocol's order terms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.pipeline import INTERNAL_TOKEN, Pipeline, pipeline, pipeline_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
ORDER = {
    "provider_instance": "billing",
    "order_id": "APP-1",
    "user_id": "player-1",
    "items": ["gem_pack_100"],
    "amount": "20000",
}


@pytest.fixture
async def running(services: Services, database_url: str) -> AsyncIterator[Pipeline]:
    settings = pipeline_settings(services, database_url)
    async with pipeline(settings, services, with_worker=False) as started:
        yield started


async def post(running: Pipeline, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await running.client.post("/internal/orders", json=body, headers=headers or AUTH)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {INTERNAL_TOKEN}"},
        {"Authorization": f"Bearer {INTERNAL_TOKEN.lower()}"},
    ],
    ids=["none", "wrong-token", "wrong-scheme", "wrong-case"],
)
async def test_requests_without_the_token_are_refused(
    running: Pipeline, headers: dict[str, str]
) -> None:
    response = await running.client.post("/internal/orders", json=ORDER, headers=headers)
    assert response.status_code == 401
    assert await running.value("SELECT count(*) FROM pending_orders") == 0


async def test_registration_is_idempotent_and_a_different_order_under_its_id_conflicts(
    running: Pipeline,
) -> None:
    first = await post(running, ORDER)
    again = await post(running, ORDER)
    other = await post(running, {**ORDER, "amount": "1"})
    assert (first.status_code, first.json()["status"]) == (201, "registered")
    assert (again.status_code, again.json()["status"]) == (200, "already_registered")
    assert other.status_code == 409
    assert other.json()["order"]["amount"] == "20000"


async def test_an_order_is_shown_and_cancelled_once(running: Pipeline) -> None:
    await post(running, ORDER)
    shown = await running.client.get("/internal/orders/billing/APP-1", headers=AUTH)
    assert shown.json()["order"]["status"] == "pending"
    cancelled = await running.client.delete("/internal/orders/billing/APP-1", headers=AUTH)
    assert (cancelled.status_code, cancelled.json()["order"]["status"]) == (200, "cancelled")
    again = await running.client.delete("/internal/orders/billing/APP-1", headers=AUTH)
    assert again.status_code == 409
    missing = await running.client.get("/internal/orders/billing/nope", headers=AUTH)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({**ORDER, "provider_instance": "nope"}, "no provider instance"),
        ({**ORDER, "provider_instance": "aigame"}, "does not verify orders"),
        ({key: v for key, v in ORDER.items() if key != "amount"}, "needs amount"),
        ({**ORDER, "provider_instance": "aigame-orders"}, "takes no items"),
        ({**ORDER, "amount": "-1"}, "amount"),
        ({**ORDER, "amount": 1.5}, "whole number"),
        ({**ORDER, "surprise": 1}, "surprise"),
        ({**ORDER, "items": ["a", "b"]}, "1 to 1 item ids"),
        ({**ORDER, "user_id": ""}, "empty"),
    ],
)
async def test_orders_that_cannot_match_a_callback_are_refused(
    running: Pipeline, body: dict[str, Any], problem: str
) -> None:
    response = await post(running, body)
    assert response.status_code == 400
    assert problem in response.json()["detail"]


async def test_ids_no_order_can_have_are_not_found_without_asking_the_database(
    running: Pipeline,
) -> None:
    response = await running.client.get("/internal/orders/billing/a%00b", headers=AUTH)
    assert response.status_code == 404


async def test_an_order_id_may_contain_a_slash(running: Pipeline) -> None:
    await post(running, {**ORDER, "order_id": "shop/APP-2"})
    shown = await running.client.get("/internal/orders/billing/shop/APP-2", headers=AUTH)
    assert shown.json()["order"]["order_id"] == "shop/APP-2"
