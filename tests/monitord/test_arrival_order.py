"""ArrivalOrder: a join store's entries in arrival order, as two deques."""

from __future__ import annotations

import math

import pytest

from monitord.arrival_order import ArrivalOrder


def _live(**times: float) -> dict[str, tuple[float]]:
    """Live entries by id, each with its time first."""
    return {event_id: (time,) for event_id, time in times.items()}


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
    assert order.oldest(_live(b=2.0, c=3.0), 0) == "b"
    assert list(order) == [(2.0, "b"), (3.0, "c")]  # "a" dropped on the way
    assert order.oldest(_live(b=2.0), 0) == "b"  # nothing dropped: "b" is still in
    with pytest.raises(IndexError):
        order.oldest({}, 0)
    assert not order


def test_extend_refuses_columns_of_unequal_length() -> None:
    with pytest.raises(ValueError, match="times: 1 for 2 event ids"):
        ArrivalOrder().extend([1.0], ["a", "b"])


def test_an_entry_stamped_past_the_horizon_is_set_aside_not_in_the_way() -> None:
    order = ArrivalOrder([(1e9, "far"), (1.0, "a"), (2.0, "b"), (50.0, "c")])
    # "far" would hold back every entry behind it: it is parked, "c" (not due, within the
    # horizon) stops the walk, as an entry in line does.
    assert order.due(cutoff=10.0, horizon=100.0) == ["a", "b"]
    assert order.parked() == {"far"}
    assert order.first_time() == 50.0
    assert list(order) == [(1e9, "far"), (50.0, "c")]
    order.append(math.nan, "d")
    assert order.due(cutoff=60.0, horizon=100.0) == ["c", "d"]  # NaN: no time, due at once
    assert order.due(cutoff=2e9, horizon=3e9) == ["far"]  # a parked entry falls due by time
    assert not order


def test_parked_entries_are_the_oldest_and_survive_a_rebuild() -> None:
    order = ArrivalOrder([(1e9, "x"), (2e9, "y"), (1.0, "a")])
    assert order.due(cutoff=0.0, horizon=100.0) == []
    assert order.oldest(_live(x=1e9, y=2e9, a=1.0), 0) == "x"  # they came first
    assert order.oldest(_live(y=2e9, a=1.0), 0) == "y"
    assert order.oldest(_live(a=1.0), 0) == "a"
    rebuilt = ArrivalOrder([(2e9, "y"), (1.0, "a")], parked={"y"})
    assert rebuilt.parked() == {"y"}
    assert rebuilt.due(cutoff=5.0, horizon=100.0) == ["a"]
    assert len(rebuilt) == 2  # the heap entry and its place in arrival order


def test_entries_of_ids_that_left_neither_fall_due_nor_hold_back_those_behind() -> None:
    entries = [(1.0, "a"), (50.0, "gone"), (2.0, "b"), (1e9, "far-gone"), (3.0, "c")]
    assert ArrivalOrder(entries).due(cutoff=10.0, horizon=100.0) == ["a"]  # "gone" stops it
    order = ArrivalOrder(entries)
    assert order.due(cutoff=10.0, horizon=100.0, live=_live(a=1.0, b=2.0, c=3.0)) == ["a", "b", "c"]
    assert not order  # nothing parked for an id that left


def test_the_entry_of_an_id_that_left_and_came_back_is_not_its_entry() -> None:
    order = ArrivalOrder([(1.0, "x"), (2.0, "y"), (1000.0, "x")])  # x left, and came back
    back = _live(x=1000.0, y=2.0)
    assert order.oldest(back, 0) == "y"  # not x by its first arrival
    assert order.due(cutoff=600.0, horizon=1e9, live=back) == ["y"]
    assert list(order) == [(1000.0, "x")]
    untimed = ArrivalOrder([(math.nan, "u")])
    assert untimed.oldest(_live(u=math.nan), 0) == "u"  # NaN is NaN's own time
