"""A payout receipt is a legible, deterministic PNG that also names its payout in text chunks."""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from ingress.receipts import Receipt, data_uri, render_receipt

PROJECT = Path(__file__).resolve().parents[2]

RECEIPT = Receipt(
    payout_id=41,
    provider_instance="baccarat-eu",
    transaction_id="bet-20260501-0007",
    user_id="player-7",
    amount=Decimal("12.50"),
    currency="EUR",
    status="Approved",
    recorded_at=datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    credited_at=datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC),
    ledger_entry_ids=(1001, 1002),
    items=(),
    price=None,
)


def _decoded(png: bytes) -> PngImagePlugin.PngImageFile:
    image = Image.open(io.BytesIO(png))
    assert isinstance(image, PngImagePlugin.PngImageFile)
    image.load()
    return image


def _text(receipt: Receipt) -> dict[str, str]:
    return dict(_decoded(render_receipt(receipt)).text)


def _chunk_types(png: bytes) -> list[bytes]:
    types, at = [], len(b"\x89PNG\r\n\x1a\n")
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        types.append(png[at + 4 : at + 8])
        at += 12 + length  # length, type, data, CRC
    return types


def test_the_receipt_is_a_png_pillow_decodes() -> None:
    image = _decoded(render_receipt(RECEIPT))
    assert image.format == "PNG"
    assert image.width >= 600


def test_text_chunks_name_the_payout_the_image_shows() -> None:
    assert _text(RECEIPT) == {
        "payout_id": "41",
        "provider_instance": "baccarat-eu",
        "transaction_id": "bet-20260501-0007",
        "user_id": "player-7",
        "amount": "12.50",
        "currency": "EUR",
        "status": "Approved",
        "recorded_at": "2026-05-01T12:00:00+00:00",
        "credited_at": "2026-05-01T12:00:01+00:00",
        "ledger_entry_ids": "1001,1002",
        "items": "[]",
    }


def test_an_uncredited_payout_without_items_has_no_credit_or_price_chunks() -> None:
    text = _text(replace(RECEIPT, status="Pending", credited_at=None, ledger_entry_ids=()))
    assert "credited_at" not in text
    assert "price" not in text
    assert text["ledger_entry_ids"] == ""


def test_item_ids_and_price_are_recorded_and_an_item_id_may_contain_a_comma() -> None:
    receipt = replace(RECEIPT, amount=Decimal(0), items=("sword", "shield, gold"), price=Decimal(5))
    text = _text(receipt)
    assert json.loads(text["items"]) == ["sword", "shield, gold"]
    assert (text["amount"], text["price"]) == ("0", "5")


@pytest.mark.parametrize(
    ("amount", "printed"),
    [(Decimal("1E+2"), "100"), (Decimal("1E-7"), "0.0000001"), (Decimal("0.10"), "0.10")],
)
def test_amounts_are_printed_in_plain_notation_as_written(amount: Decimal, printed: str) -> None:
    assert _text(replace(RECEIPT, amount=amount))["amount"] == printed


def test_equal_amounts_written_differently_are_not_served_from_each_others_cache() -> None:
    # Decimal("1.0") == Decimal("1.00"): a cache keyed on the Receipt would print one for both.
    assert _text(replace(RECEIPT, amount=Decimal("1.0")))["amount"] == "1.0"
    assert _text(replace(RECEIPT, amount=Decimal("1.00")))["amount"] == "1.00"


def test_text_beyond_latin_1_is_kept() -> None:
    assert _text(replace(RECEIPT, user_id="игрок-7"))["user_id"] == "игрок-7"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(RECEIPT, recorded_at=datetime(2026, 5, 1, 12, 0))


def test_the_same_receipt_gives_the_same_bytes_in_another_process() -> None:
    # A fresh interpreter has an empty cache, so this compares two real renderings.
    rendered_elsewhere = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ingress.receipts import render_receipt; "
            "from tests.unit.test_receipts import RECEIPT; "
            "sys.stdout.buffer.write(render_receipt(RECEIPT))",
        ],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout
    assert render_receipt(RECEIPT) == rendered_elsewhere


def test_the_png_carries_no_time_chunk() -> None:
    types = _chunk_types(render_receipt(RECEIPT))
    assert types[0] == b"IHDR"
    assert types[-1] == b"IEND"
    assert set(types) <= {b"IHDR", b"tEXt", b"iTXt", b"IDAT", b"IEND"}


def test_a_long_transaction_id_is_wrapped_not_cut() -> None:
    long_id = "bet-" + "0123456789abcdef" * 16
    png = render_receipt(replace(RECEIPT, transaction_id=long_id))
    assert _decoded(png).text["transaction_id"] == long_id
    assert _decoded(png).height > _decoded(render_receipt(RECEIPT)).height


def test_the_receipt_has_dark_text_on_a_white_background() -> None:
    image = _decoded(render_receipt(RECEIPT)).convert("L")
    histogram = image.histogram()
    assert image.getpixel((0, 0)) == 255
    assert sum(histogram[:64]) > 500  # dark pixels: text was drawn


def test_the_data_uri_round_trips_through_base64() -> None:
    png = render_receipt(RECEIPT)
    uri = data_uri("image/png", png)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri.removeprefix(prefix), validate=True) == png
