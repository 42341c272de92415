"""The one conversion to values JSON and AMQP headers can carry."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from schema.plain_values import plain_value


def test_json_values_are_kept_as_they_are() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": False}}
    assert plain_value(value) == value


def test_decimals_are_plain_text_never_an_exponent() -> None:
    assert plain_value(Decimal("1.50")) == "1.50"
    assert plain_value(Decimal("1E+3")) == "1000"


def test_times_are_iso_8601() -> None:
    assert plain_value(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00+00:00"


def test_bytes_are_text_with_bad_utf8_replaced() -> None:
    assert plain_value(b"ok") == "ok"
    assert plain_value(bytearray(b"\xff")) == "\ufffd"


def test_nan_and_infinities_are_named() -> None:
    assert plain_value(float("nan")) == "nan"
    assert plain_value(float("-inf")) == "-inf"


def test_containers_are_converted_all_the_way_down() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert plain_value({1: (b"x", {"t": when})}) == {"1": ["x", {"t": when.isoformat()}]}


def test_anything_else_is_its_text_and_the_result_is_always_json() -> None:
    event_id = uuid.uuid4()
    value = {"id": event_id, "odd": float("inf"), "raw": b"\x00\xff", "set": {1}}
    converted = plain_value(value)
    assert converted["id"] == str(event_id)
    assert json.loads(json.dumps(converted, allow_nan=False)) == converted
