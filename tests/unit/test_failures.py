"""The retry policy and the history a failed message carries, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from payouts.actions.dead_letters import Exported, Selection
from schema.envelopes import ENVELOPE_TYPE, encode_envelope
from schema.events import EVENT_TYPE, encode_event
from tests.factories import payout_event
from workers import failures
from workers.dead_letters import DeadEnvelope, DeadLetter
from workers.failures import (
    Failure,
    FailureKind,
    carried_headers,
    failure_of,
    retry_delay_ms,
    retry_headers,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
BOOM = Failure(FailureKind.TRANSIENT, "ConnectionDoesNotExistError", "connection lost")


def test_database_trouble_is_transient_and_anything_else_unexpected() -> None:
    assert failure_of(asyncpg.exceptions.SerializationError("x")).kind is FailureKind.TRANSIENT
    assert failure_of(ConnectionResetError()).kind is FailureKind.TRANSIENT
    assert failure_of(TimeoutError()).kind is FailureKind.TRANSIENT
    idle_timeout = asyncpg.exceptions.IdleInTransactionSessionTimeoutError("x")
    assert failure_of(idle_timeout).kind is FailureKind.TRANSIENT
    assert failure_of(KeyError("bug")).kind is FailureKind.UNEXPECTED


def test_each_failure_counts_once_and_keeps_first_and_last_time() -> None:
    first = retry_headers({"provider_instance": "ow"}, BOOM, datetime(2026, 1, 1, tzinfo=UTC))
    second = retry_headers(first, BOOM, datetime(2026, 1, 2, tzinfo=UTC))
    assert second[failures.ATTEMPTS] == 2
    assert second[failures.FIRST_FAILURE].startswith("2026-01-01")
    assert second[failures.LAST_FAILURE].startswith("2026-01-02")
    assert len(second[failures.HISTORY]) == 2
    assert second["provider_instance"] == "ow"


def test_history_is_bounded() -> None:
    headers: dict[str, object] = {}
    for _ in range(25):
        headers = retry_headers(headers, BOOM)
    assert headers[failures.ATTEMPTS] == 25
    assert len(headers[failures.HISTORY]) == failures.MAX_HISTORY  # type: ignore[arg-type]


def test_garbage_counters_start_from_zero() -> None:
    assert retry_headers({failures.ATTEMPTS: "lots"}, BOOM)[failures.ATTEMPTS] == 1


@pytest.mark.parametrize(("attempts", "tier"), [(1, 5), (2, 60), (3, 600)])
def test_each_attempt_waits_in_its_tier_shortened_by_at_most_the_jitter(
    attempts: int, tier: int
) -> None:
    for _ in range(50):
        step = retry_delay_ms((5, 60, 600), attempts, jitter=0.2)
        assert step is not None
        assert step[0] == tier
        assert tier * 800 <= step[1] <= tier * 1000


def test_after_the_last_tier_the_message_is_dead_lettered() -> None:
    assert retry_delay_ms((5, 60, 600), 4, jitter=0.2) is None


def test_a_message_the_broker_dead_lettered_itself_is_described_from_x_death() -> None:
    when = datetime(2026, 11, 1, tzinfo=UTC)
    headers = {
        "x-death": [
            {
                "reason": "delivery_limit",
                "queue": "p.payouts.work",
                "count": 1,
                "time": when,
                "exchange": "p.payouts",
            }
        ],
        "x-delivery-count": 20,
    }
    entry = DeadLetter.from_parts(headers, b"{", "m-1")
    assert (entry.kind, entry.attempts, entry.last_failure_at) == (
        "broker:delivery_limit",
        20,
        when,
    )
    assert DeadLetter.from_parts(headers, b"{", "m-1").dead_letter_id == entry.dead_letter_id
    assert Selection(reason="broker:delivery_limit").matches(entry, when)
    assert not Selection(provider="other").matches(entry, when)


def test_database_refusing_a_value_is_poison_not_worth_retrying() -> None:
    error = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
    assert failure_of(error).kind is FailureKind.POISON


def test_carried_headers_drop_the_brokers_and_make_the_rest_encodable() -> None:
    headers = {
        "x-death": [{"count": 1}],
        "x-first-death-queue": "q",
        "x-delivery-count": 3,
        "raw": b"\xff\xfe",
        "buffer": bytearray(b"ok"),
        "money": Decimal("1.50"),
        "when": datetime(2026, 1, 1, tzinfo=UTC),
        "odd": float("nan"),
        "nothing": None,
        "nested": {"deeper": [b"x", None, 1]},
    }
    assert carried_headers(headers) == {
        "raw": "\ufffd\ufffd",
        "buffer": "ok",
        "money": "1.50",
        "when": "2026-01-01T00:00:00+00:00",
        "odd": "nan",
        "nested": {"deeper": ["x", None, 1]},
    }
    assert carried_headers(["not", "a", "dict"]) == {}


def test_naive_times_in_headers_are_read_as_utc() -> None:
    entry = DeadLetter.from_parts(
        {failures.DEAD_LETTER_ID: "d-1", failures.LAST_FAILURE: "2026-11-01T00:00:00"}, b"{", None
    )
    assert entry.age_seconds(datetime(2026, 11, 1, 0, 1, tzinfo=UTC)) == 60
    assert Selection(older_than_seconds=30).matches(entry, datetime(2026, 11, 1, 0, 1, tzinfo=UTC))


def test_an_exported_line_keeps_its_id_when_imported() -> None:
    when = datetime(2026, 11, 1, tzinfo=UTC)
    original = DeadLetter.from_parts({"x-death": [{"reason": "expired", "time": when}]}, b"{}", "m")
    imported = Exported.parse(original.to_jsonl())
    again = DeadLetter.from_parts(imported.headers, imported.body, imported.message_id)
    assert again.dead_letter_id == original.dead_letter_id
    assert again.body == b"{}"


@pytest.mark.parametrize(
    "line",
    [
        "[1]",
        "null",
        "{",
        '{"body_base64": 5}',
        '{"body_base64": "!!"}',
        '{"body_base64": "", "headers": []}',
        '{"body_base64": "", "message_id": 7}',
    ],
)
def test_malformed_export_lines_are_refused_with_a_reason(line: str) -> None:
    with pytest.raises(ValueError, match=r"must be|not a JSON object|not base64"):
        Exported.parse(line)


def test_deeply_nested_poison_is_shown_as_text() -> None:
    entry = DeadLetter.from_parts({}, b"[" * 100_000, None)
    assert entry.details()["body"].startswith("[[[")


ENCLOSED = encode_envelope([payout_event(), payout_event()])


@pytest.mark.parametrize(
    ("body", "message_type", "expected"),
    [
        (ENCLOSED, ENVELOPE_TYPE, DeadEnvelope(2, None)),
        (ENCLOSED, None, DeadEnvelope(2, None)),  # its type lost on the way: told by its body
        (ENCLOSED.replace(b'"envelope_version":1', b'"envelope_version":9'), None, 2),
        (ENCLOSED, "payout-envelope.v2", 2),
        (b'{"envelope_version": 1, "events": []}', ENVELOPE_TYPE, 0),
        (b"\x00\xff", ENVELOPE_TYPE, None),
    ],
)
def test_an_envelope_dead_lettered_whole_says_how_many_events_and_whether_it_is_malformed(
    body: bytes, message_type: str | None, expected: DeadEnvelope | int | None
) -> None:
    envelope = DeadLetter.from_parts({}, body, "e-1", message_type).envelope
    assert envelope is not None
    if isinstance(expected, DeadEnvelope):
        assert envelope == expected
    else:  # malformed, with its events counted where they can be
        assert (envelope.events, envelope.malformed is not None) == (expected, True)
    assert Selection(envelopes=True).matches(
        DeadLetter.from_parts({}, body, "e-1", message_type), NOW
    )


@pytest.mark.parametrize(
    ("body", "message_type"),
    [
        (encode_event(payout_event()), EVENT_TYPE),
        (encode_event(payout_event()), None),
        (b'{"envelope_version": 1}', EVENT_TYPE),  # a single event's poison, not an envelope
        (b"[" * 100_000, None),
    ],
)
def test_a_single_event_message_is_no_envelope(body: bytes, message_type: str | None) -> None:
    entry = DeadLetter.from_parts({}, body, "m-1", message_type)
    assert entry.envelope is None
    assert entry.summary(NOW)["envelope"] is None
    assert not Selection(envelopes=True).matches(entry, NOW)
