"""The counts of the console's pages: one in the singular, any other number in the plural."""

from __future__ import annotations

from payouts.console.wording import counted, plural


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert [counted(n, "message") for n in (0, 1, 2, 2000)] == [
        "0 messages",
        "1 message",
        "2 messages",
        "2,000 messages",
    ]


def test_an_irregular_plural_is_given() -> None:
    assert counted(1, "delivery", "deliveries") == "1 delivery"
    assert counted(3, "delivery", "deliveries") == "3 deliveries"
    assert plural(1, "was", "were") == "was"
    assert plural(2, "was", "were") == "were"
