"""Query strings are decoded once, strictly, as browsers and PHP encode them."""

from __future__ import annotations

import pytest

from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict


def test_plus_is_a_space_and_percent_escapes_are_utf8_bytes() -> None:
    assert parse_query(b"name=J%C3%BCrgen+M%C3%BCller&x=%2B1") == {
        "name": "Jürgen Müller",
        "x": "+1",
    }


def test_decoding_happens_once() -> None:
    assert parse_query(b"v=%2541") == {"v": "%41"}


def test_key_without_value_and_empty_segments() -> None:
    assert parse_query(b"a&&b=&c=1&") == {"a": "", "b": "", "c": "1"}


def test_value_may_contain_equals_signs() -> None:
    assert parse_query(b"token=abc==") == {"token": "abc=="}


@pytest.mark.parametrize(
    "raw",
    [b"a=1&a=1", b"a=1&a=2", b"a=1&%61=2"],
    ids=["same-value", "different-value", "encoded-name"],
)
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(Rejection) as raised:
        parse_query(raw)
    assert raised.value.verdict is Verdict.MALFORMED


@pytest.mark.parametrize("raw", [b"a=%ZZ", b"a=%4", b"a=100%", b"a=%C3%28", b"=1"])
def test_broken_escapes_invalid_utf8_and_nameless_parameters_are_refused(raw: bytes) -> None:
    with pytest.raises(Rejection) as raised:
        parse_query(raw)
    assert raised.value.verdict is Verdict.MALFORMED
