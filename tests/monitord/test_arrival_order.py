"""ArrivalOrder: a join store's entries in arrival order, as two deques."""

from __future__ import annotations

import math

import pytest

from monitord.arrival_order import ArrivalOrder


def test_entries_keep_their_arrival_order_and_times() -> None:
    order = ArrivalOrder([(5.0, "a")])
    order.append(3.0, "b")  # an earlier time later: arrival order, not time order
    order.extend([math.nan, 9.0], ["c", "d"])
    assert len(order) == 4
    assert list(order)[:2] == [(5.0, "a"), (3.0, "b")]
    assert math.isnan(list(order)[2][0])
    assert order.first_time() == 5.0
    assert order.popleft() == (5.0, "a")
    assert [event_id for _, event_id in order] == ["b", "c", "d"]


def test_oldest_skips_ids_that_left() -> None:
    order = ArrivalOrder([(1.0, "a"), (2.0, "b"), (3.0, "c")])
    assert order.oldest({"b", "c"}) == "b"
    assert list(order) == [(2.0, "b"), (3.0, "c")]  # "a" dropped on the way
    assert order.oldest({"b"}) == "b"  # nothing dropped: "b" is still in
    with pytest.raises(IndexError):
        order.oldest(set())
    assert not order


def test_extend_refuses_columns_of_unequal_length() -> None:
    with pytest.raises(ValueError, match="times: 1 for 2 event ids"):
        ArrivalOrder().extend([1.0], ["a", "b"])
