"""Values as JSON and AMQP headers can carry them: the one conversion for dead-letter records,
re-published headers and the `payouts` command's output."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from schema.events import decimal_text

__all__ = ["plain_value"]


def plain_value(value: Any) -> Any:
    """`value` with every part JSON can hold kept, and the rest as text: bytes decoded (bad
    UTF-8 replaced), decimals in plain notation, times in ISO 8601, NaN and infinities by name,
    tuples as lists, keys as strings, anything else (a UUID) as `str` gives it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    return str(value)
