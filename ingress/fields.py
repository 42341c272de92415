"""Strict per-field formats: the defence against signatures that do not separate their fields.

Every reader raises `Rejection(MALFORMED)` naming the parameter as the provider sent it.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from ingress.verdicts import Rejection, Verdict

__all__ = [
    "MAX_ID_LENGTH",
    "amount",
    "is_storable_id",
    "positive_integer",
    "text",
    "unsigned_integer",
    "uuid_v4",
]

_UUID_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
# Plain decimal notation: no sign, no exponent, no leading zeros, no surrounding junk.
# Always used with fullmatch: `$` would let a trailing newline through.
_UNSIGNED_INTEGER = re.compile(r"0|[1-9][0-9]*")
MAX_INTEGER_DIGITS = 18
# The longest id any protocol records (the payout event's limit).
MAX_ID_LENGTH = 128


def _malformed(name: str, problem: str) -> Rejection:
    return Rejection(Verdict.MALFORMED, f"parameter {name!r} {problem}")


def text(name: str, value: str, *, max_length: int, required: bool = True) -> str:
    """Free text as sent: bounded, and without control characters that could hide content."""
    if required and not value:
        raise _malformed(name, "is empty")
    if len(value) > max_length:
        raise _malformed(name, f"is longer than {max_length} characters")
    if _has_control_characters(value):
        raise _malformed(name, "contains control characters")
    if value != value.strip():
        raise _malformed(name, "has leading or trailing whitespace")
    return value


def _has_control_characters(value: str) -> bool:
    if value.isascii():
        # The one such category ASCII has is Cc, exactly what isprintable() refuses there; this
        # path is per field of every callback, the category walk several times slower.
        return not value.isprintable()
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in value)


def unsigned_integer(name: str, value: str) -> int:
    if not _UNSIGNED_INTEGER.fullmatch(value) or len(value) > MAX_INTEGER_DIGITS:
        raise _malformed(
            name, f"must be an unsigned integer of at most {MAX_INTEGER_DIGITS} digits"
        )
    return int(value)


def is_storable_id(value: str) -> bool:
    """Whether `text` would accept this as an id: a lookup of anything else can find nothing."""
    try:
        text("id", value, max_length=MAX_ID_LENGTH)
    except Rejection:
        return False
    return True


def positive_integer(name: str, value: str) -> int:
    number = unsigned_integer(name, value)
    if number == 0:
        raise _malformed(name, "must be greater than zero")
    return number


def amount(
    name: str, value: str, *, decimal_places: int, maximum: Decimal, allow_zero: bool = False
) -> Decimal:
    """An amount in plain notation with at most `decimal_places` fractional digits; positive,
    or zero where the protocol settles payouts of nothing (a lost bet)."""
    whole, dot, fraction = value.partition(".")
    if decimal_places == 0 and dot:
        raise _malformed(name, "must be a whole number")
    if dot and not (
        0 < len(fraction) <= decimal_places and fraction.isascii() and fraction.isdigit()
    ):
        raise _malformed(name, f"must have 1 to {decimal_places} digits after the point")
    if not _UNSIGNED_INTEGER.fullmatch(whole) or len(whole) > MAX_INTEGER_DIGITS:
        raise _malformed(name, "must be an unsigned number in plain notation")
    parsed = Decimal(value)
    if parsed == 0 and not allow_zero:
        raise _malformed(name, "must be greater than zero")
    if parsed > maximum:
        raise _malformed(name, f"exceeds this instance's maximum payout of {maximum}")
    return parsed


def uuid_v4(name: str, value: str) -> str:
    """A canonical UUID version 4, returned in lowercase so one transaction has one key."""
    lowered = value.lower()
    if not _UUID_V4.fullmatch(lowered):
        raise _malformed(name, "must be a UUID v4 (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)")
    return lowered
