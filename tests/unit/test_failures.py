"""The retry policy and the history a failed message carries, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from workers import failures
from workers.dead_letters import DeadLetter, Selection
from workers.failures import Failure, FailureKind, failure_of, retry_delay_ms, retry_headers

BOOM = Failure(FailureKind.TRANSIENT, "ConnectionDoesNotExistError", "connection lost")


def test_database_trouble_is_transient_and_anything_else_unexpected() -> None:
    assert failure_of(asyncpg.exceptions.SerializationError("x")).kind is FailureKind.TRANSIENT
    assert failure_of(ConnectionResetError()).kind is FailureKind.TRANSIENT
    assert failure_of(TimeoutError()).kind is FailureKind.TRANSIENT
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
