"""Query strings are decoded once, strictly, as browsers and PHP encode them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# Any text but "~", so that the one escaped parameter below, "~~", is no other.
_TEXT = st.text(st.characters(exclude_characters="~"), max_size=8)


@given(st.lists(st.tuples(_TEXT, st.booleans(), _TEXT), min_size=1, max_size=6))
def test_a_query_without_escapes_reads_as_it_does_with_one(
    pairs: list[tuple[str, bool, str]],
) -> None:
    """A query without a %-escape or a '+' takes a shorter path: it must read, or be refused,
    as it is with one escaped parameter more, which takes the component-wise path."""
    text = "&".join(key + ("=" + value if has_value else "") for key, has_value, value in pairs)
    raw = text.replace("%", "").replace("+", "").encode("utf-8", "surrogatepass")
    read = _read(raw)
    read_with_escape = _read(raw + b"&~%7E=1")
    if isinstance(read_with_escape, dict):
        assert read_with_escape.pop("~~") == "1"
    assert read == read_with_escape


def _read(raw: bytes) -> dict[str, str] | str:
    try:
        return parse_query(raw)
    except Rejection as rejection:
        return rejection.detail
