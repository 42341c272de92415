"""Specs 001 and 004 end to end: the ingress answers with the outcome the worker committed."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aio_pika
import httpx
import pytest

from ingress.app import create_app
from ingress.outcomes import LISTENER_APPLICATION_NAME
from schema.settings import DatabaseSettings, Settings
from schema.topology import Topology
from tests.integration.pipeline import (
    AIGAME,
    AIGAME_KEY,
    AIGAME_ORDERS,
    BILLING,
    BILLING_SECRET,
    ENVIRON,
    INTERNAL_TOKEN,
    Pipeline,
    pipeline,
    pipeline_settings,
)
from tests.metrics_reading import sample_value
from tests.polling import wait_until
from tests.postgres_proxies import naming_hosts
from tests.signing import aigame_payout_body, wallet_billing_body
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


@pytest.fixture
async def running(services: Services, database_url: str) -> AsyncIterator[Pipeline]:
    async with pipeline(pipeline_settings(services, database_url), services) as started:
        yield started


def payout(user: str = "member-1", win: str = "100", **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "agent_id": "agent001",
        "user_id": user,
        "game_id": "101",
        "inst_id": "000002",
        "shoe_id": 10231,
        "round_id": 41,
        "bet_txn_id": uuid.uuid4().hex[:24],
        "win_amount": win,
        "pay_out_time": int(time.time() * 1000),
        "currency": "VND2",
        "timestamp": int(time.time() * 1000),
    }
    return {**fields, **overrides}


async def send(running: Pipeline, fields: dict[str, object], route: str = AIGAME) -> Any:
    response = await running.client.post(route, json=aigame_payout_body(fields, AIGAME_KEY))
    assert response.status_code == 200
    return response.json()


async def balance(running: Pipeline, user: str, currency: str = "VND2") -> Decimal | None:
    value: Decimal | None = await running.value(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = $1 AND currency = $2",
        user,
        currency,
    )
    return value


async def test_a_payout_is_answered_with_the_balance_after_it(running: Pipeline) -> None:
    await running.create_member("member-1", "VND2")
    first = await send(running, payout(win="100"))
    second = await send(running, payout(win="50.5"))
    assert first == {
        "code": 200,
        "message": "success",
        "data": {"balance": "100.00", "currency": "VND2"},
    }
    assert second["data"] == {"balance": "150.50", "currency": "VND2"}
    assert await balance(running, "member-1") == Decimal("150.5")


async def test_concurrent_duplicates_credit_once_and_all_answer_one_balance(
    running: Pipeline,
) -> None:
    await running.create_member("member-2", "VND2")
    fields = payout(user="member-2", win="75.25")
    answers = await asyncio.gather(*(send(running, fields) for _ in range(8)))
    assert {answer["code"] for answer in answers} == {200}
    assert {answer["data"]["balance"] for answer in answers} == {"75.25"}
    assert await balance(running, "member-2") == Decimal("75.25")
    assert await running.value("SELECT count(*) FROM ledger_entries") == 2


async def test_a_resend_with_an_expired_timestamp_after_settlement_gets_success(
    running: Pipeline,
) -> None:
    await running.create_member("member-3", "VND2")
    fields = payout(user="member-3", win="10")
    settled = await send(running, fields)
    an_hour_ago = int((time.time() - 3600) * 1000)
    resent = await send(running, {**fields, "timestamp": an_hour_ago})
    assert settled["code"] == resent["code"] == 200
    assert resent["data"] == settled["data"] == {"balance": "10.00", "currency": "VND2"}
    assert await balance(running, "member-3") == Decimal(10)


async def test_an_expired_request_for_a_new_order_changes_nothing(running: Pipeline) -> None:
    await running.create_member("member-4", "VND2")
    stale = payout(user="member-4", timestamp=int((time.time() - 3600) * 1000))
    assert (await send(running, stale))["code"] == 408000
    assert await running.value("SELECT count(*) FROM payouts") == 0
    assert await balance(running, "member-4") == 0


async def test_an_unknown_member_is_credited_once_after_the_operator_creates_it(
    running: Pipeline,
) -> None:
    fields = payout(user="newcomer", win="30")
    assert (await send(running, fields))["code"] == 800101
    assert (await send(running, fields))["code"] == 800101  # the platform re-sends every minute
    await running.create_member("newcomer", "VND2")
    resent = await send(running, fields)
    assert resent == {
        "code": 200,
        "message": "success",
        "data": {"balance": "30.00", "currency": "VND2"},
    }
    assert (await send(running, fields))["data"]["balance"] == "30.00"
    assert await balance(running, "newcomer") == Decimal(30)


async def test_a_lost_bet_settles_with_success_and_credits_nothing(running: Pipeline) -> None:
    await running.create_member("member-5", "VND2")
    await send(running, payout(user="member-5", win="20"))
    lost = await send(running, payout(user="member-5", win="0"))
    assert lost["data"] == {"balance": "20.00", "currency": "VND2"}
    assert await running.value("SELECT count(*) FROM payouts WHERE amount = 0") == 1


async def test_a_currency_not_enabled_is_refused_and_records_nothing(running: Pipeline) -> None:
    answer = await send(running, payout(currency="USD"))
    assert answer == {"code": 800102, "message": "Currency does not exist", "data": {}}
    assert await running.value("SELECT count(*) FROM payouts") == 0


async def test_a_settled_order_resent_with_another_amount_is_answered_as_settled(
    running: Pipeline,
) -> None:
    await running.create_member("member-6", "VND2")
    fields = payout(user="member-6", win="5")
    settled = await send(running, fields)
    recalculated = await send(running, {**fields, "win_amount": "500"})
    assert recalculated == settled  # the FAQ: an order already settled gets success again
    assert await balance(running, "member-6") == Decimal(5)
    recorded = await running.value("SELECT amount FROM payout_conflicts WHERE outcome = 'conflict'")
    assert recorded == Decimal(500)  # for an operator to review


async def test_a_settled_order_resent_in_another_currency_is_answered_in_the_recorded_one(
    running: Pipeline,
) -> None:
    """The balance in a success answer is the recorded payout's wallet's: it must name that
    wallet's currency, not the re-send's."""
    await running.create_member("member-17", "VND2")
    fields = payout(user="member-17", win="5")
    settled = await send(running, fields)
    resent = await send(running, {**fields, "currency": "THB"})
    assert settled["data"] == {"balance": "5.00", "currency": "VND2"}
    assert resent == settled
    assert await running.value("SELECT count(*) FROM payout_conflicts") == 1


async def test_an_unsettled_order_resent_with_another_amount_is_a_payout_failure(
    running: Pipeline,
) -> None:
    fields = payout(user="not-yet-a-member", win="5")
    assert (await send(running, fields))["code"] == 800101
    assert (await send(running, {**fields, "win_amount": "6"}))["code"] == 800109


async def test_refusals_are_answered_in_the_spec_format_with_http_200(running: Pipeline) -> None:
    body = aigame_payout_body(payout(), "wrong-key")
    bad_signature = await running.client.post(AIGAME, json=body)
    not_json = await running.client.post(AIGAME, content=b"{not json")
    wrong_method = await running.client.get(AIGAME)
    assert [r.status_code for r in (bad_signature, not_json, wrong_method)] == [200, 200, 200]
    assert bad_signature.json() == {"code": 600100, "message": "Signature error", "data": {}}
    assert not_json.json()["code"] == wrong_method.json()["code"] == 408000
    assert await running.value("SELECT count(*) FROM payouts") == 0


async def test_a_gzip_encoded_payout_is_credited(running: Pipeline) -> None:
    await running.create_member("member-7", "VND2")
    body = json.dumps(aigame_payout_body(payout(user="member-7", win="9"), AIGAME_KEY))
    response = await running.client.post(
        AIGAME,
        content=gzip.compress(body.encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.json()["data"] == {"balance": "9.00", "currency": "VND2"}


async def test_without_an_outcome_in_time_the_answer_is_try_again_and_the_resend_succeeds(
    services: Services, database_url: str
) -> None:
    settings = pipeline_settings(services, database_url)
    quick = settings.providers[0].model_copy(update={"outcome_timeout_seconds": 0.5})
    settings = settings.model_copy(update={"providers": (quick, *settings.providers[1:])})
    async with pipeline(settings, services, with_worker=False) as running:
        await running.create_member("member-8", "VND2")
        fields = payout(user="member-8", win="12")
        assert await send(running, fields) == {
            "code": 800100,
            "message": "Service exception",
            "data": {},
        }
        await running.start_worker()
        resent = await send(running, {**fields, "timestamp": int(time.time() * 1000)})
        assert resent["data"] == {"balance": "12.00", "currency": "VND2"}
        assert await balance(running, "member-8") == Decimal(12)


async def register(running: Pipeline, **order: object) -> Any:
    response = await running.client.post("/internal/orders", json=order, headers=AUTH)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_an_unknown_bet_order_is_refused_until_the_game_registers_it(
    running: Pipeline,
) -> None:
    fields = payout(user="bettor", win="40")
    assert (await send(running, fields, AIGAME_ORDERS)) == {
        "code": 800107,
        "message": "Order ID does not exist",
        "data": {},
    }
    assert await running.value("SELECT count(*) FROM payouts") == 0
    await register(
        running, provider_instance="aigame-orders", order_id=fields["bet_txn_id"], user_id="bettor"
    )
    assert (await send(running, fields, AIGAME_ORDERS))["data"]["balance"] == "40.00"


def purchase(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "txnid": f"W-{uuid.uuid4().hex[:10]}",
        "userid": "player-1",
        "gameid": "g1",
        "serverid": "s1",
        "items": "gem_pack_100",
        "amount": 20000,
        "apptxnid": f"APP-{uuid.uuid4().hex[:10]}",
        "addinfo": "",
    }
    return {**fields, **overrides}


async def bill(running: Pipeline, fields: dict[str, object]) -> Any:
    response = await running.client.post(BILLING, json=wallet_billing_body(fields, BILLING_SECRET))
    assert response.status_code == 200
    return response.json()


async def inventory(running: Pipeline, user: str, item: str) -> int:
    quantity = await running.value(
        "SELECT quantity FROM inventories WHERE user_id = $1 AND item_id = $2", user, item
    )
    return int(quantity or 0)


async def register_purchase(running: Pipeline, fields: dict[str, object]) -> None:
    await register(
        running,
        provider_instance="billing",
        order_id=fields["apptxnid"],
        user_id=fields["userid"],
        items=[fields["items"]],
        amount=str(fields["amount"]),
    )


async def test_a_verified_purchase_grants_its_item_once_and_a_duplicate_gets_2(
    running: Pipeline,
) -> None:
    fields = purchase()
    await register_purchase(running, fields)
    assert await bill(running, fields) == {"resultCode": 1, "resultMessage": "Success"}
    assert await bill(running, fields) == {
        "resultCode": 2,
        "resultMessage": "Transaction Duplicate",
    }
    assert await inventory(running, "player-1", "gem_pack_100") == 1
    price = await running.value(
        "SELECT price FROM payouts WHERE transaction_id = $1", fields["txnid"]
    )
    assert price == Decimal(20000)
    assert await balance(running, "player-1", "VND") == 0  # paid for, not credited


async def test_an_order_mismatch_grants_nothing_and_leaves_the_order_pending(
    running: Pipeline,
) -> None:
    fields = purchase(userid="player-2")
    await register_purchase(running, fields)
    cheaper = {**fields, "amount": 1}
    assert (await bill(running, cheaper))["resultCode"] == 6
    assert await inventory(running, "player-2", "gem_pack_100") == 0
    assert await running.value("SELECT count(*) FROM payouts") == 0
    status = await running.value(
        "SELECT status FROM pending_orders WHERE order_id = $1", fields["apptxnid"]
    )
    assert status == "pending"
    assert (await bill(running, fields))["resultCode"] == 1


async def test_an_unknown_or_already_used_order_grants_nothing(running: Pipeline) -> None:
    assert (await bill(running, purchase(userid="player-3")))["resultCode"] == 5
    fields = purchase(userid="player-3")
    await register_purchase(running, fields)
    assert (await bill(running, fields))["resultCode"] == 1
    reused = {**fields, "txnid": "W-another"}
    assert (await bill(running, reused))["resultCode"] == 5
    assert await inventory(running, "player-3", "gem_pack_100") == 1


async def test_a_bad_billing_signature_is_code_3_and_changes_nothing(running: Pipeline) -> None:
    body = wallet_billing_body(purchase(), "wrong")
    response = await running.client.post(BILLING, json=body)
    assert response.json() == {"resultCode": 3, "resultMessage": "Invalid signature"}
    assert await running.value("SELECT count(*) FROM payouts") == 0


async def test_without_the_database_json_callbacks_answer_try_again_and_publish_nothing(
    services: Services, database_url: str
) -> None:
    settings = pipeline_settings(services, database_url)
    unreachable = settings.model_copy(
        update={
            "database": DatabaseSettings(url="postgresql://nobody@127.0.0.1:1/none"),
            "partners": (),
        }
    )
    try:
        await assert_try_again_and_nothing_published(services, unreachable)
    finally:
        await services.release_namespace(settings.broker.namespace)


async def assert_try_again_and_nothing_published(services: Services, settings: Settings) -> None:
    app = create_app(settings, ENVIRON)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:

            async def broker_connected() -> bool:
                report: dict[str, str] = (await client.get("/readyz")).json()
                return report["broker"] == "connected"

            await wait_until(broker_connected, "ingress connected to the broker")
            ready = (await client.get("/readyz")).json()
            assert ready["outcomes"] == "not listening"
            before = (await client.get("/metrics")).text
            aigame = await client.post(AIGAME, json=aigame_payout_body(payout(), AIGAME_KEY))
            billing = await client.post(
                BILLING, json=wallet_billing_body(purchase(), BILLING_SECRET)
            )
            after = (await client.get("/metrics")).text
    # The request counter says what the provider was told, never "accepted".
    for instance in ("aigame", "billing"):
        for verdict, count in (("try_again", 1), ("accepted", 0)):
            answered = "payouts_ingress_requests_total"
            grew = sample_value(after, answered, instance=instance, verdict=verdict) - sample_value(
                before, answered, instance=instance, verdict=verdict
            )
            assert grew == count, (instance, verdict)
    assert aigame.json() == {"code": 800100, "message": "Service exception", "data": {}}
    assert billing.json() == {
        "resultCode": 9,
        "resultMessage": "Temporarily unavailable, retry later",
    }
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(
            Topology(settings.broker.namespace).work_queue, passive=True
        )
        assert queue.declaration_result.message_count == 0


async def test_the_outcome_listener_reconnects_after_its_connection_is_killed(
    running: Pipeline,
) -> None:
    # This database's listener only: other runs on the same server have theirs.
    listeners = (
        "SELECT array_agg(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1"
    )
    (killed,) = await running.value(listeners, LISTENER_APPLICATION_NAME)
    assert await running.value("SELECT pg_terminate_backend($1)", killed)

    async def not_listening() -> bool:
        report: dict[str, str] = (await running.client.get("/readyz")).json()
        return report["outcomes"] != "listening"

    # Noticed at once, not at the next ping: requests meanwhile are told to retry at once.
    await wait_until(not_listening, "the lost listener noticed", limit_seconds=2)

    async def listening_again() -> bool:
        report: dict[str, str] = (await running.client.get("/readyz")).json()
        # A new backend: the terminated one may linger in pg_stat_activity for a moment.
        pids = await running.value(listeners, LISTENER_APPLICATION_NAME)
        return report["outcomes"] == "listening" and pids is not None and killed not in pids

    await wait_until(listening_again, "the listener back", limit_seconds=20)
    await running.create_member("member-9", "VND2")
    assert (await send(running, payout(user="member-9", win="3")))["data"]["balance"] == "3.00"


async def test_the_outcome_listener_moves_to_the_next_host_when_its_host_goes_away(
    services: Services, database_url: str
) -> None:
    """The database URL names two hosts (two proxies in front of one server); the first one
    dies. Until the listener is back, a JSON protocol answers "try again" at once, publishing
    nothing; then it listens on the second host, and payouts are answered with their outcome."""
    first = await TcpProxy.in_front_of(database_url)
    second = await TcpProxy.in_front_of(database_url)
    settings = pipeline_settings(
        services, naming_hosts(database_url, f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}")
    )
    try:
        async with pipeline(settings, services) as running:
            await running.create_member("member-7", "VND2")
            await first.cut()

            async def not_listening() -> bool:
                report: dict[str, str] = (await running.client.get("/readyz")).json()
                return report["outcomes"] != "listening"

            await wait_until(not_listening, "the lost listener noticed", limit_seconds=2)
            started = time.monotonic()
            fields = payout(user="member-7", win="4")
            assert await send(running, fields) == {
                "code": 800100,
                "message": "Service exception",
                "data": {},
            }
            assert time.monotonic() - started < 1, "try again was not answered at once"

            async def listening_again() -> bool:
                report: dict[str, str] = (await running.client.get("/readyz")).json()
                return report["outcomes"] == "listening"

            await wait_until(listening_again, "the listener on the second host", 20)
            # Nothing was published for the request answered "try again": its resend credits.
            assert await running.value("SELECT count(*) FROM payouts") == 0
            resent = await send(running, {**fields, "timestamp": int(time.time() * 1000)})
            assert resent["data"] == {"balance": "4.00", "currency": "VND2"}
    finally:
        await first.close()
        await second.close()
