"""POST bodies: bounded reads, bounded decompression, and JSON that keeps numbers as text."""

from __future__ import annotations

import gzip
import zlib
from typing import TYPE_CHECKING

import pytest
from starlette.requests import Request

from ingress.bodies import JsonNumber, parse_json_object, read_body
from ingress.verdicts import Rejection, Verdict

if TYPE_CHECKING:
    from starlette.types import Message

LIMIT = 1024


def request(body: bytes, encoding: str | None = None, chunk: int = 100) -> Request:
    headers = [(b"content-encoding", encoding.encode())] if encoding else []
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> Message:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    scope = {"type": "http", "method": "POST", "headers": headers, "query_string": b""}
    return Request(scope, receive)


async def rejected(body: bytes, encoding: str | None = None) -> Verdict:
    with pytest.raises(Rejection) as raised:
        await read_body(request(body, encoding), LIMIT)
    return raised.value.verdict


async def test_a_plain_body_is_returned_as_sent() -> None:
    assert await read_body(request(b'{"a": 1}'), LIMIT) == b'{"a": 1}'


async def test_a_body_over_the_limit_is_refused_while_streaming() -> None:
    assert await rejected(b"x" * (LIMIT + 1)) is Verdict.TOO_LARGE


async def test_gzip_is_decompressed_with_or_without_the_header() -> None:
    packed = gzip.compress(b'{"a": "b"}')
    assert await read_body(request(packed, "gzip"), LIMIT) == b'{"a": "b"}'
    assert await read_body(request(packed), LIMIT) == b'{"a": "b"}'


async def test_deflate_is_decompressed() -> None:
    assert await read_body(request(zlib.compress(b"{}"), "deflate"), LIMIT) == b"{}"


async def test_a_gzip_bomb_is_refused_at_the_limit() -> None:
    bomb = gzip.compress(b"0" * 1_000_000)
    assert len(bomb) < LIMIT
    assert await rejected(bomb, "gzip") is Verdict.TOO_LARGE


async def test_broken_or_truncated_gzip_is_malformed() -> None:
    packed = gzip.compress(b'{"a": "b"}')
    assert await rejected(packed[:-6], "gzip") is Verdict.MALFORMED
    assert await rejected(b"not gzip", "gzip") is Verdict.MALFORMED
    assert await rejected(packed + b"junk", "gzip") is Verdict.MALFORMED


async def test_an_unknown_content_encoding_is_malformed() -> None:
    assert await rejected(b"{}", "br") is Verdict.MALFORMED


def test_numbers_keep_their_text() -> None:
    parsed = parse_json_object(b'{"i": 100, "f": 1.50, "n": -3, "e": 1e2}')
    assert parsed == {"i": "100", "f": "1.50", "n": "-3", "e": "1e2"}
    assert all(isinstance(value, JsonNumber) for value in parsed.values())


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b"[1, 2]",
        b'"text"',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe",
        b'{"a": ' * 100_000,
        b"",
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
    ],
)
def test_anything_but_one_unambiguous_object_is_malformed(body: bytes) -> None:
    with pytest.raises(Rejection) as raised:
        parse_json_object(body)
    assert raised.value.verdict is Verdict.MALFORMED
