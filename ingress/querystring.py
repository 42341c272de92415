"""Strict decoding of a raw query string, once, exactly as browsers and PHP encode it.

`+` is a space and `%XX` a byte; the bytes must be UTF-8. Duplicate keys are refused rather than
resolved, because first-wins and last-wins parsers would disagree about what was signed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from ingress.verdicts import Rejection, Verdict

__all__ = ["decode_component", "parse_query"]

_BROKEN_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def decode_component(component: bytes) -> str:
    """One name or value of a query string, as sent, read as text."""
    decoded = component.replace(b"+", b" ")
    if b"%" in decoded:  # most callbacks escape nothing, and skip the unquoting
        if _BROKEN_ESCAPE.search(decoded):
            raise Rejection(Verdict.MALFORMED, "query string has a malformed %-escape")
        decoded = unquote_to_bytes(decoded)
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejection(Verdict.MALFORMED, "query string is not valid UTF-8") from None


def parse_query(raw: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue  # "a=1&&b=2" and a trailing "&" carry no parameter
        raw_key, _, raw_value = pair.partition(b"=")
        key = decode_component(raw_key)
        if not key:
            raise Rejection(Verdict.MALFORMED, "query string has a parameter without a name")
        if key in params:
            raise Rejection(Verdict.MALFORMED, f"parameter {key!r} appears more than once")
        params[key] = decode_component(raw_value)
    return params
