"""Payout receipts: the ledger's record of one payout drawn as a PNG for the Payout Proof API.

The picture is for people; the same fields ride along as PNG text chunks for machines, so a
partner's tooling can tell which transaction an image shows without reading pixels.
"""

from __future__ import annotations

import base64
import bisect
import io
import json
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from schema.events import decimal_text

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

__all__ = ["Receipt", "data_uri", "render_receipt"]

_TITLE = "Payout receipt"
_WIDTH = 800
_MARGIN = 32
_TITLE_SIZE = 26
_TITLE_HEIGHT = 48
_SIZE = 18
_LINE_HEIGHT = 26
_LABEL_GAP = 16
_LABEL_SHADE = 80  # dark grey: labels recede, values read first
# A partner polls the same payouts again and again, and each drawing costs several milliseconds.
_CACHED_RECEIPTS = 1024

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_Lines = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Receipt:
    """What the ledger recorded for one payout, as a partner is shown it."""

    payout_id: int
    provider_instance: str
    transaction_id: str
    user_id: str
    amount: Decimal  # credited to the wallet; 0 for a lost bet or an item purchase
    currency: str
    status: str  # partner-facing, e.g. "Approved" or "Pending"
    recorded_at: datetime
    credited_at: datetime | None
    ledger_entry_ids: tuple[int, ...]
    items: tuple[str, ...]
    price: Decimal | None  # what the user paid for the items, in `currency`

    def __post_init__(self) -> None:
        # A naive time would be read as the server's local time and printed as a wrong UTC one.
        for moment in (self.recorded_at, self.credited_at):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(
                    f"receipt of payout {self.payout_id}: times must be timezone-aware"
                )


def render_receipt(receipt: Receipt) -> bytes:
    """The receipt as PNG bytes; the same receipt always gives the same bytes."""
    # Cached on the text drawn rather than on the Receipt: Decimal("1.0") == Decimal("1.00"), so
    # equal receipts can still print differently.
    return _png(_lines(receipt), _text_chunks(receipt))


def data_uri(media_type: str, data: bytes) -> str:
    """An RFC 2397 base64 data URI, the form of each entry in `proof_images`."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _lines(receipt: Receipt) -> _Lines:
    """(label, value) for each line, in the order a person reads them."""
    credited = receipt.credited_at
    lines = [
        ("Transaction", receipt.transaction_id),
        ("User", receipt.user_id),
        ("Amount", f"{decimal_text(receipt.amount)} {receipt.currency}"),
        ("Status", receipt.status),
        ("Recorded", _utc(receipt.recorded_at)),
        ("Credited", "not credited" if credited is None else _utc(credited)),
        ("Ledger entries", ", ".join(map(str, receipt.ledger_entry_ids)) or "none"),
        ("Items", ", ".join(receipt.items) or "none"),
    ]
    if receipt.price is not None:
        lines.append(("Price", f"{decimal_text(receipt.price)} {receipt.currency}"))
    lines += [
        ("Provider instance", receipt.provider_instance),
        ("Payout id", str(receipt.payout_id)),
    ]
    return tuple(lines)


def _text_chunks(receipt: Receipt) -> _Lines:
    """(key, value) for each PNG text chunk; a field that is absent has no chunk."""
    chunks = [
        ("payout_id", str(receipt.payout_id)),
        ("provider_instance", receipt.provider_instance),
        ("transaction_id", receipt.transaction_id),
        ("user_id", receipt.user_id),
        ("amount", decimal_text(receipt.amount)),
        ("currency", receipt.currency),
        ("status", receipt.status),
        ("recorded_at", _utc(receipt.recorded_at)),
        ("ledger_entry_ids", ",".join(map(str, receipt.ledger_entry_ids))),
        # JSON, not commas: an item id may itself contain a comma.
        ("items", json.dumps(receipt.items)),
    ]
    if receipt.credited_at is not None:
        chunks.append(("credited_at", _utc(receipt.credited_at)))
    if receipt.price is not None:
        chunks.append(("price", decimal_text(receipt.price)))
    return tuple(chunks)


@lru_cache(maxsize=_CACHED_RECEIPTS)
def _png(lines: _Lines, chunks: _Lines) -> bytes:
    # Fonts are loaded per drawing (well under a millisecond): receipts are drawn from several
    # threads at once, and a FreeType face is not safe to share between them.
    font = ImageFont.load_default(size=_SIZE)
    label_width = max(font.getlength(label) for label, _ in lines) + _LABEL_GAP
    value_width = _WIDTH - 2 * _MARGIN - label_width
    rows = [(label, _wrap(value, font, value_width)) for label, value in lines]
    height = 2 * _MARGIN + _TITLE_HEIGHT + _LINE_HEIGHT * sum(len(parts) for _, parts in rows)

    image = Image.new("L", (_WIDTH, height), color=255)
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN, _MARGIN), _TITLE, fill=0, font=ImageFont.load_default(size=_TITLE_SIZE))
    top = _MARGIN + _TITLE_HEIGHT
    for label, parts in rows:
        draw.text((_MARGIN, top), label, fill=_LABEL_SHADE, font=font)
        for part in parts:
            draw.text((_MARGIN + label_width, top), part, fill=0, font=font)
            top += _LINE_HEIGHT

    # Text chunks only: Pillow writes no tIME chunk unless asked, which keeps the bytes stable.
    info = PngInfo()
    for key, value in chunks:
        info.add_text(key, value)  # falls back to iTXt for text beyond Latin-1
    png = io.BytesIO()
    image.save(png, format="PNG", pnginfo=info)
    return png.getvalue()


def _wrap(text: str, font: _Font, width: float) -> list[str]:
    """Break at spaces where it can, and inside a word only when the word is wider than a line."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:
            cut = _fitting_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    lines.append(line)
    return lines


def _fitting_prefix(word: str, font: _Font, width: float) -> int:
    """How many leading characters of `word` fit in `width`; at least one, so wrapping ends."""
    fitting = bisect.bisect_right(
        range(1, len(word) + 1), width, key=lambda length: font.getlength(word[:length])
    )
    return max(1, fitting)
