"""Request bodies of POST callbacks: read within a byte limit, decompressed within the same
limit, and decoded as one JSON object that keeps every number's text exactly as sent.

Providers sign the text they sent, so a number must never pass through a float on its way to the
signature or to an amount. Duplicate keys are refused, as in query strings: two parsers could
disagree about which value was signed.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING

from ingress.verdicts import Rejection, Verdict

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["JsonNumber", "JsonObject", "parse_json_object", "read_body"]

GZIP_MAGIC = b"\x1f\x8b"
# zlib's window bits: a gzip header and trailer, or a zlib one.
GZIP_WBITS = 31
ZLIB_WBITS = 15


class JsonNumber(str):
    """A JSON number, as the text the sender wrote (`100`, `1.50`, `-3`, `1e2`)."""

    __slots__ = ()


JsonObject = dict[str, object]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, decompressed when it is gzip or deflate; never more than `max_bytes` either way.

    Counts the bytes as they stream in: a chunked request has no Content-Length to trust.
    """
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > max_bytes:
            raise Rejection(Verdict.TOO_LARGE, f"body over {max_bytes} bytes")
    body = bytes(received)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    # Some senders compress without saying so; no JSON text can start with the gzip magic.
    if encoding in ("gzip", "x-gzip") or (encoding in ("", "identity") and body[:2] == GZIP_MAGIC):
        return _inflate(body, max_bytes, GZIP_WBITS, "gzip")
    if encoding == "deflate":
        return _inflate(body, max_bytes, ZLIB_WBITS, "deflate")
    if encoding not in ("", "identity"):
        raise Rejection(Verdict.MALFORMED, f"content-encoding {encoding!r} is not supported")
    return body


def _inflate(body: bytes, max_bytes: int, wbits: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        inflated = inflater.decompress(body, max_bytes + 1)
    except zlib.error:
        raise Rejection(Verdict.MALFORMED, f"body is not valid {name} data") from None
    if len(inflated) > max_bytes or inflater.unconsumed_tail:
        raise Rejection(Verdict.TOO_LARGE, f"decompressed body over {max_bytes} bytes")
    if not inflater.eof or inflater.unused_data:
        raise Rejection(Verdict.MALFORMED, f"body is truncated or trailing {name} data")
    return inflated


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> JsonObject:
    found: JsonObject = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {key!r} appears twice")
        found[key] = value
    return found


def parse_json_object(body: bytes) -> JsonObject:
    """One JSON object; numbers become `JsonNumber` (their text), nothing becomes a float."""
    try:
        text = body.decode("utf-8")
        parsed = json.loads(
            text,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except UnicodeDecodeError:
        raise Rejection(Verdict.MALFORMED, "body is not UTF-8") from None
    except RecursionError:
        raise Rejection(Verdict.MALFORMED, "body nests too deeply") from None
    except ValueError as error:
        raise Rejection(Verdict.MALFORMED, f"body is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise Rejection(Verdict.MALFORMED, "body must be a JSON object")
    try:
        # A `\ud800` escape decodes to a lone surrogate, which no UTF-8 text (so no signature
        # and no database) can hold: refuse it here rather than fail later.
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejection(Verdict.MALFORMED, "body escapes a lone surrogate") from None
    return parsed
