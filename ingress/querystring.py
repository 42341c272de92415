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
    if b"%" not in raw and b"+" not in raw:
        # Most callbacks escape nothing: each component is then its bytes read as UTF-8, and
        # the whole string reads at once (no character's UTF-8 bytes hold '&' or '='), in a
        # quarter of the time. Not UTF-8: the loop below names it as before.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            unescaped: dict[str, str] = {}
            for component in text.split("&"):
                if component:
                    key, _, value = component.partition("=")
                    _check_new(unescaped, key)
                    unescaped[key] = value
            return unescaped
    params: dict[str, str] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue  # "a=1&&b=2" and a trailing "&" carry no parameter
        raw_key, _, raw_value = pair.partition(b"=")
        key = decode_component(raw_key)
        _check_new(params, key)
        params[key] = decode_component(raw_value)
    return params


def _check_new(params: dict[str, str], key: str) -> None:
    if not key:
        raise Rejection(Verdict.MALFORMED, "query string has a parameter without a name")
    if key in params:
        raise Rejection(Verdict.MALFORMED, f"parameter {key!r} appears more than once")
