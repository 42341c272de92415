"""When one `multiple` ack may settle a batch: never past an open delivery still being credited."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.deliveries import single_ack_tag


def test_a_batch_of_the_oldest_open_deliveries_is_settled_by_its_highest_tag() -> None:
    assert single_ack_tag({3, 4, 5, 9}, [3, 4, 5]) == 5
    assert single_ack_tag({7}, [7]) == 7


def test_an_older_delivery_still_open_forbids_a_single_ack() -> None:
    assert single_ack_tag({1, 3, 4}, [3, 4]) is None  # 1 is in another batch, uncommitted
    assert single_ack_tag({2, 3, 4}, [2, 4]) is None  # 3 is open between them


def test_nothing_or_a_settled_delivery_gives_no_single_ack() -> None:
    assert single_ack_tag({1, 2}, []) is None
    assert single_ack_tag({2, 3}, [1, 2, 3]) is None  # 1 was settled already


def test_a_tag_named_twice_counts_once() -> None:
    assert single_ack_tag({1, 2}, [2, 2]) is None  # would settle 1 too
    assert single_ack_tag({1, 2}, [1, 2, 2]) == 2


@given(
    open_tags=st.sets(st.integers(1, 60), max_size=40),
    committed=st.lists(st.integers(1, 60), max_size=40),
)
def test_a_single_ack_settles_exactly_the_committed_deliveries(
    open_tags: set[int], committed: list[int]
) -> None:
    tag = single_ack_tag(open_tags, committed)
    if tag is not None:
        assert {t for t in open_tags if t <= tag} == set(committed)
    elif committed and set(committed) <= open_tags:
        assert {t for t in open_tags if t <= max(committed)} != set(committed)
