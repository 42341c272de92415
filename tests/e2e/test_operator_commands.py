"""The operator's commands for orders and proof images, run as an operator types them, and the
audit trail they write."""

from __future__ import annotations

import getpass
import io
import json
from typing import TYPE_CHECKING

import httpx
from PIL import Image

from tests.e2e.stack import BILLING_SECRET
from tests.signing import wallet_billing_body

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.stack import Stack


ATTACHES_AUDITED = """
SELECT json_agg(json_build_object('actor', actor, 'target', target, 'result', result,
    'detail', detail) ORDER BY id)::text
FROM audit_log WHERE action = 'proof.attach' AND actor_kind = 'cli'
"""


def image_file(tmp_path: Path, image_format: str) -> Path:
    path = tmp_path / f"proof.{image_format.lower()}"
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(buffer, format=image_format)
    path.write_bytes(buffer.getvalue())
    return path


async def test_an_order_registered_on_the_command_line_is_consumed_by_its_purchase(
    stack: Stack,
) -> None:
    register = stack.run(
        "order", "register", "--provider", "billing", "--order-id", "APP-9",
        "--user", "player-9", "--item", "gem_pack", "--amount", "500", "--json",
    )  # fmt: skip
    assert register.returncode == 0, register.stderr
    assert json.loads(register.stdout)["result"] == "registered"
    refused = stack.run(
        "order", "register", "--provider", "billing", "--order-id", "APP-10", "--user", "p",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "needs items" in refused.stderr

    await stack.start_ingress()
    await stack.start_worker()
    fields = {"txnid": "W-9", "userid": "player-9", "items": "gem_pack", "amount": 500,
              "apptxnid": "APP-9"}  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        answer = await client.post(
            "/callbacks/billing", json=wallet_billing_body(fields, BILLING_SECRET)
        )
    assert answer.json() == {"resultCode": 1, "resultMessage": "Success"}

    shown = json.loads(
        stack.run("order", "show", "--provider", "billing", "--order-id", "APP-9", "--json").stdout
    )
    assert shown["status"] == "consumed"
    cancel = stack.run("order", "cancel", "--provider", "billing", "--order-id", "APP-9")
    assert cancel.returncode == 1
    balances = json.loads(stack.run("balance", "show", "--user", "player-9", "--json").stdout)
    assert balances["inventory"] == [{"item_id": "gem_pack", "quantity": 1}]


async def test_proof_images_are_validated_before_they_are_attached(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.start_ingress()
    await stack.start_worker()
    fields = {"txnid": "W-1", "userid": "u", "items": "pack", "amount": 1, "apptxnid": "A-1"}
    stack.run("order", "register", "--provider", "billing", "--order-id", "A-1", "--user", "u",
              "--item", "pack", "--amount", "1")  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        await client.post("/callbacks/billing", json=wallet_billing_body(fields, BILLING_SECRET))

    def attach(path: Path, transaction: str = "W-1") -> tuple[int, str]:
        done = stack.run(
            "payout", "attach-proof", "--provider", "billing", "--transaction", transaction,
            "--file", str(path), "--json",
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    png = image_file(tmp_path, "PNG")
    code, output = attach(png)
    assert code == 0, output
    assert json.loads(output)["media_type"] == "image/png"
    assert json.loads(attach(png)[1])["already_attached"] is True
    gif_code, gif_output = attach(image_file(tmp_path, "GIF"))
    assert gif_code == 1
    assert "GIF" in gif_output
    assert attach(png, transaction="W-none")[0] == 1
    count = await stack.fetchval("SELECT count(*) FROM proof_images")
    assert count == 1
    audited = json.loads(await stack.fetchval(ATTACHES_AUDITED))
    image_id = await stack.fetchval("SELECT image_id FROM proof_images")
    assert [(a["actor"], a["target"], a["result"]) for a in audited] == [
        (getpass.getuser(), "billing W-1", "ok"),
        (getpass.getuser(), "billing W-1", "ok"),
        (getpass.getuser(), "billing W-1", "failed"),
        (getpass.getuser(), "billing W-none", "failed"),
    ]
    assert [a["detail"] for a in audited[:2]] == [
        {"image_id": image_id, "media_type": "image/png", "already_attached": False},
        {"image_id": None, "media_type": "image/png", "already_attached": True},
    ]
    assert audited[2]["detail"]["error"].startswith("ProofImageError")
    assert audited[3]["detail"]["error"].startswith("NoSuchPayout")
