"""Spec 002, the Payout Proof API, against real payouts: every error as the spec lists it,
partners isolated from each other, and a receipt that shows the right transaction."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from payouts.actions.proofs import attach_proof
from schema.settings import DatabaseSettings
from tests.integration.pipeline import (
    AIGAME,
    AIGAME_KEY,
    BILLING,
    BILLING_SECRET,
    ENVIRON,
    PARTNERS,
    Pipeline,
    pipeline,
    pipeline_settings,
)
from tests.metrics_reading import sample_value
from tests.signing import (
    aigame_payout_body,
    offerwall_query,
    proof_signature,
    wallet_billing_body,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services

PROOF = "/payout/api/proof/get_data.php"


@pytest.fixture
async def running(services: Services, database_url: str) -> AsyncIterator[Pipeline]:
    async with pipeline(pipeline_settings(services, database_url), services) as started:
        yield started


async def credited_payout(
    running: Pipeline, user: str = "member-p", win: str = "42.5", order_id: str | None = None
) -> str:
    await running.create_member(user, "VND2")
    order_id = order_id or uuid.uuid4().hex[:24]
    now = int(time.time() * 1000)
    fields = {
        "agent_id": "agent001",
        "user_id": user,
        "game_id": "101",
        "inst_id": "1",
        "shoe_id": 1,
        "round_id": 1,
        "bet_txn_id": order_id,
        "win_amount": win,
        "pay_out_time": now,
        "currency": "VND2",
        "timestamp": now,
    }
    answer = await running.client.post(AIGAME, json=aigame_payout_body(fields, AIGAME_KEY))
    assert answer.json()["code"] == 200
    return order_id


def proof_request(
    order_id: str, pid: str = "partner-a", api_key: str | None = None, **body: Any
) -> dict[str, Any]:
    key, secret = PARTNERS[pid]
    return {
        "json": {
            "pid": pid,
            "order_id": order_id,
            "signature": proof_signature(pid, secret, order_id),
            **body,
        },
        "headers": {"X-API-KEY": api_key if api_key is not None else key},
    }


async def ask(running: Pipeline, **request: Any) -> tuple[int, Any]:
    response = await running.client.post(PROOF, **request)
    return response.status_code, response.json()


def decoded_png(uri: str) -> PngImageFile:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix(prefix))))
    assert isinstance(image, PngImageFile)
    image.load()
    return image


async def test_an_approved_payout_comes_with_a_receipt_showing_its_transaction(
    running: Pipeline,
) -> None:
    order_id = await credited_payout(running)
    status, body = await ask(running, **proof_request(order_id))
    assert status == 200
    assert body["status"] == "success"
    assert body["order_id"] == order_id
    assert body["transaction_status"] == "Approved"
    (receipt,) = body["proof_images"]
    image = decoded_png(receipt)
    assert image.text["transaction_id"] == order_id
    assert image.text["user_id"] == "member-p"
    assert Decimal(image.text["amount"]) == Decimal("42.5")
    entries = await running.value(
        "SELECT string_agg(entry_id::text, ',' ORDER BY entry_id) FROM ledger_entries"
    )
    assert image.text["ledger_entry_ids"] == entries


async def test_attached_images_follow_the_receipt(running: Pipeline) -> None:
    order_id = await credited_payout(running)
    picture = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(picture, format="JPEG")
    conn = await asyncpg.connect(running.settings.database.url)
    try:
        await attach_proof(conn, "aigame", order_id, "image/jpeg", picture.getvalue())
    finally:
        await conn.close()
    _, body = await ask(running, **proof_request(order_id))
    assert len(body["proof_images"]) == 2
    assert body["proof_images"][1] == "data:image/jpeg;base64," + base64.b64encode(
        picture.getvalue()
    ).decode("ascii")


async def test_a_held_payout_is_pending(running: Pipeline) -> None:
    now = int(time.time() * 1000)
    fields = {
        "agent_id": "a",
        "user_id": "stranger",
        "game_id": "101",
        "inst_id": "1",
        "shoe_id": 1,
        "round_id": 1,
        "bet_txn_id": "held-order-1",
        "win_amount": "5",
        "pay_out_time": now,
        "currency": "VND2",
        "timestamp": now,
    }
    answer = await running.client.post(AIGAME, json=aigame_payout_body(fields, AIGAME_KEY))
    assert answer.json()["code"] == 800101
    _, body = await ask(running, **proof_request("held-order-1"))
    assert body["transaction_status"] == "Pending"
    assert decoded_png(body["proof_images"][0]).text["status"] == "Pending"


async def test_another_partners_transaction_is_exactly_not_found(running: Pipeline) -> None:
    order_id = await credited_payout(running)
    other = await ask(running, **proof_request(order_id, pid="partner-b"))
    unknown = await ask(running, **proof_request("no-such-order", pid="partner-b"))
    assert other == unknown == (200, {"status": "error", "message": "Transaction not found"})


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"X-API-KEY": "key-a"}}, 400, "Invalid request data"),
        ({"json": [1, 2], "headers": {"X-API-KEY": "key-a"}}, 400, "Invalid request data"),
        ({"json": {"order_id": "o", "signature": "s"}}, 400, "pid not provided"),
        ({"json": {"pid": "", "order_id": "o", "signature": "s"}}, 400, "pid not provided"),
        ({"json": {"pid": "partner-a", "signature": "s"}}, 400, "order_id not provided"),
        ({"json": {"pid": "partner-a", "order_id": "o"}}, 400, "signature not provided"),
    ],
    ids=["malformed-json", "not-an-object", "no-pid", "empty-pid", "no-order-id", "no-signature"],
)
async def test_request_errors_are_the_spec_messages(
    running: Pipeline, request_args: dict[str, Any], status: int, message: str
) -> None:
    assert await ask(running, **request_args) == (status, {"status": "error", "message": message})


async def test_authentication_errors_are_the_spec_messages(running: Pipeline) -> None:
    order_id = await credited_payout(running)
    no_key = proof_request(order_id)
    del no_key["headers"]["X-API-KEY"]
    wrong_signature = proof_request(order_id)
    wrong_signature["json"]["signature"] = proof_signature("partner-a", "guess", order_id)
    unknown_pid = proof_request(order_id)
    unknown_pid["json"]["pid"] = "partner-z"
    cases = [
        (no_key, 401, "API key not provided"),
        (proof_request(order_id, api_key="stolen"), 401, "Invalid API key"),
        (proof_request(order_id, api_key="key-b"), 401, "Invalid API key"),
        (wrong_signature, 401, "Verification failed"),
        (unknown_pid, 200, "Invalid user"),
    ]
    for request_args, status, message in cases:
        expected = (status, {"status": "error", "message": message})
        assert await ask(running, **request_args) == expected, message


async def test_the_signature_hex_case_does_not_matter(running: Pipeline) -> None:
    order_id = await credited_payout(running)
    request_args = proof_request(order_id)
    request_args["json"]["signature"] = request_args["json"]["signature"].upper()
    assert (await ask(running, **request_args))[1]["status"] == "success"


async def test_without_the_database_the_proof_api_says_so_and_callbacks_still_work(
    services: Services, database_url: str
) -> None:
    settings = pipeline_settings(services, database_url)
    offerwall_only = settings.model_copy(
        update={
            "database": DatabaseSettings(url="postgresql://nobody@127.0.0.1:1/none"),
            "providers": settings.providers[3:],
            "partners": settings.partners[1:],
        }
    )
    async with pipeline(offerwall_only, services, with_worker=False) as running:
        status, body = await ask(running, **proof_request("any", pid="partner-b"))
        assert (status, body) == (
            503,
            {"status": "error", "message": "Service temporarily unavailable"},
        )
        query = offerwall_query(
            {"user_id": "u", "amount": "1", "trans_id": "t-1", "send_time": "1700000000"},
            "pub-key-1",
        )
        callback = await running.client.get(f"/callbacks/offerwall_md5?{query}")
        assert callback.status_code == 200
        ready = await running.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == "unreachable"


async def test_a_transaction_only_ever_refused_is_rejected(running: Pipeline) -> None:
    fields = {
        "txnid": "W-refused-1",
        "userid": "player-r",
        "items": "pack",
        "amount": 10,
        "apptxnid": "APP-unknown",
    }
    answer = await running.client.post(BILLING, json=wallet_billing_body(fields, BILLING_SECRET))
    assert answer.json()["resultCode"] == 5
    _, body = await ask(running, **proof_request("W-refused-1"))
    assert (body["transaction_status"], body["proof_images"]) == ("Rejected", [])


async def test_the_spec_example_request_gets_the_spec_example_response_shape(
    running: Pipeline,
) -> None:
    order_id = "ORDER_123456"
    await credited_payout(running, order_id=order_id)
    # The spec's PHP example: hash('sha256', $pid . $secret_key . $order_id).
    signature = hashlib.sha256(
        b"your_provided_pid" + b"your_provided_secret_key" + b"ORDER_123456"
    ).hexdigest()
    response = await running.client.post(
        PROOF,
        content=json.dumps(
            {"pid": "your_provided_pid", "order_id": order_id, "signature": signature}
        ),
        headers={"Content-Type": "application/json", "X-API-KEY": "your_provided_api_key"},
    )
    body = response.json()
    assert response.status_code == 200
    assert list(body) == ["status", "order_id", "transaction_status", "proof_images"]
    assert (body["status"], body["order_id"], body["transaction_status"]) == (
        "success",
        "ORDER_123456",
        "Approved",
    )
    assert all(uri.startswith("data:image/") for uri in body["proof_images"])


async def test_an_order_id_no_payout_can_have_is_not_found(running: Pipeline) -> None:
    assert await ask(running, **proof_request("bad\u0000id")) == (
        200,
        {"status": "error", "message": "Transaction not found"},
    )


async def test_during_a_rotation_both_keys_work_and_the_metrics_say_which_matched(
    services: Services, database_url: str
) -> None:
    settings = pipeline_settings(services, database_url)
    rotating = settings.partners[0].model_copy(
        update={
            "api_key_env": ("PARTNER_A_KEY", "PARTNER_A_NEXT_KEY"),
            "secret_env": ("PARTNER_A_SECRET", "PARTNER_A_NEXT_SECRET"),
        }
    )
    settings = settings.model_copy(update={"partners": (rotating, *settings.partners[1:])})
    async with pipeline(settings, services) as running:
        order_id = await credited_payout(running)
        before = (await running.client.get("/metrics")).text
        old = proof_request(order_id)
        new = proof_request(order_id, api_key=ENVIRON["PARTNER_A_NEXT_KEY"])
        new["json"]["signature"] = proof_signature(
            "partner-a", ENVIRON["PARTNER_A_NEXT_SECRET"], order_id
        )
        answers = [(await ask(running, **request))[1]["status"] for request in (old, new, new)]
        after = (await running.client.get("/metrics")).text
    assert answers == ["success"] * 3

    def grew(name: str, **labels: str) -> float:
        return sample_value(after, name, **labels) - sample_value(before, name, **labels)

    matches = "payouts_proof_api_key_matches_total"
    current = {"api_key": "PARTNER_A_KEY", "secret": "PARTNER_A_SECRET"}
    following = {"api_key": "PARTNER_A_NEXT_KEY", "secret": "PARTNER_A_NEXT_SECRET"}
    assert grew(matches, pid="partner-a", **current) == 1
    assert grew(matches, pid="partner-a", **following) == 2
    assert grew("payouts_proof_api_requests_total", status="200") == 3
