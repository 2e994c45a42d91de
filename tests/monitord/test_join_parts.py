"""A join store checkpointed in parts (a full part, then deltas) restores to the store it
was: the same entries in the same orders, and the same joins after."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import orjson

from connectors.stream import Record, TopicPartition
from monitord.join_parts import FULL_AFTER, JOURNAL_SLACK, JoinJournal, apply, delta
from monitord.join_store import JoinStore, Label

RECORD = Record("in", 0, 0, None, b"", 0)


def _store() -> JoinStore:
    # Small bounds, so evictions, expiry and forgetting all happen.
    store = JoinStore(TopicPartition("in", 0), 40, 500.0, remember=200, max_ahead_s=1000.0)
    store.expected_delay_s, store.coverage = 60.0, []
    return store


def _step(store: JoinStore, rng: np.random.Generator, step: int, counts: Counter[Any]) -> Any:
    """One random change of ``store`` at step (and event time) ``step``; what it returned.

    Ids are of the last 30 steps: within them nothing is forgotten (at most 190 ids are
    remembered in 30 steps), so an id that left never comes back, which would leave its
    first arrival in the live store's orders (as until a compaction) but not in a restored
    one's.
    """
    kind = rng.integers(0, 8)
    event_id = f"e{step - rng.integers(0, 30) if rng.random() < 0.3 else step}"
    time = step + float(rng.normal(0, 5))
    if rng.random() < 0.03:
        time = math.nan if rng.random() < 0.5 else step + 1e5  # untimed, or far ahead
    if kind <= 2:
        return store.add(event_id, ("m", "1", 0.5, time, step, 0), RECORD, counts)
    if kind == 3 and not store.early:
        ids = [f"e{step}-{k}" for k in range(5)]
        rows = (ids, [1] * 5, [time] * 5, [step] * 5, [0] * 5)
        return store.add_all("m", "1", rows, counts)
    label = Label(f"e{step - rng.integers(0, 30)}", int(rng.integers(0, 2)), None, time, RECORD)
    if kind <= 5:
        taken = store.take(label, counts)
        return taken if taken is not None else store.wait(label, counts, time * 1000.0)
    if kind == 6:
        return store.expire(step - 100.0, counts)
    return store.sweep(step)


def _restored(stored: dict[str, bytes], chain: tuple[str, ...]) -> JoinStore:
    copy = _store()
    blobs = [stored[part] for part in chain]
    copy.restore(blobs[0], blobs[1:])
    return copy


def _same(live: JoinStore, copy: JoinStore) -> None:
    stores = (live, copy)
    assert copy.snapshot() == live.snapshot()  # entries, orders, overdue, parked, clocks
    assert list(copy.done_order) == list(live.done_order)
    for name in ("pending_order", "early_order"):  # the entries of ids still there
        entries = live.pending if name == "pending_order" else live.early
        in_line = [[entry for entry in getattr(s, name) if entry[1] in entries] for s in stores]
        assert in_line[0] == in_line[1], name


def test_a_store_restored_from_its_parts_is_the_store_it_was() -> None:
    rng = np.random.default_rng(7)
    live, counts = _store(), Counter[Any]()
    stored: dict[str, bytes] = {}
    chains: list[tuple[str, ...]] = []
    for step in range(6000):
        _step(live, rng, step, counts)
        if step % 37 == 0:
            parts = live.parts()
            if rng.random() < 0.1:
                continue  # the checkpoint failed to store: the next part covers these too
            stored.update(parts.blobs)
            live.saved()
            chains.append(parts.ids)
            if len(chains) % 9 == 0:
                _same(live, _restored(stored, parts.ids))
    # Deltas were stored, chains of several, and full parts started new chains.
    assert max(map(len, chains)) > 3
    assert sum(len(chain) == 1 for chain in chains) > 3
    assert counts["m", "evicted"] > 100
    assert counts["m", "joined"] > 500
    assert counts["", "orphan"] > 0
    assert counts["m", "duplicate_prediction"] > 0

    # A store restored from its last parts goes on as the live one does.
    parts = live.parts()
    stored.update(parts.blobs)
    live.saved()
    copy = _restored(stored, parts.ids)
    copy_counts = Counter[Any]()
    counts.clear()
    live.coverage.clear()
    for step in range(6000, 8000):
        got = _step(live, np.random.default_rng(step), step, counts)
        again = _step(copy, np.random.default_rng(step), step, copy_counts)
        assert got == again, step
    assert counts == copy_counts
    assert live.coverage == copy.coverage
    assert sum(not covered for *_, covered in copy.coverage) > 100
    _same(live, copy)


def test_a_delta_restores_ids_that_left_and_came_back_and_labels_changed_in_place() -> None:
    pending = {"a": [1], "b": [2], "c": [3]}
    done = {"x": 1, "y": 2, "z": 3}
    journal = JoinJournal()
    # "a" leaves and comes back (now last); "b" leaves; "d" comes and goes.
    del pending["a"], pending["b"]
    pending["a"] = [4]
    journal.left += ["a", "b", "d"]
    journal.added += ["d", "a"]
    # "y" relabelled in place; "x" forgotten and "w" remembered after "z".
    done["y"] = 5
    done.pop("x")
    done["w"] = 6
    journal.remembered += ["y", "w"]
    journal.forgotten.append("x")
    changes = orjson.loads(orjson.dumps(delta(pending, done, {"c"}, journal)))
    old_pending = {"a": [1], "b": [2], "c": [3]}
    old_done = {"x": 1, "y": 2, "z": 3}
    overdue = {"b"}
    assert apply(changes, old_pending, old_done, overdue) == ["a"]
    assert list(old_pending.items()) == list(pending.items()) == [("c", [3]), ("a", [4])]
    assert list(old_done.items()) == list(done.items()) == [("y", 5), ("z", 3), ("w", 6)]
    assert overdue == set()  # "b" left; "c" was not swept since


def test_a_chain_of_deltas_is_cut_by_a_full_part_once_it_outgrows_the_store() -> None:
    store, counts = _store(), Counter[Any]()
    store.max_pending, store.remember = 1000, 25
    lengths = []
    for round_ in range(40):
        for i in range(10):  # ten predictions come, and the ten before are labelled
            store.add(f"r{round_}-{i}", ("m", "1", 0, float(round_), i, 0), RECORD, counts)
            if round_:
                store.take(Label(f"r{round_ - 1}-{i}", 1, None, float(round_), RECORD), counts)
        parts = store.parts()
        store.saved()
        lengths.append(len(parts.ids))
        entries = len(store.pending) + len(store.done) + len(store.early)
        assert store.chain.changes <= FULL_AFTER * entries
    assert counts["m", "joined"] == 390
    assert lengths[:3] == [1, 2, 3]  # the first part is full (nothing journaled), then deltas
    assert lengths.count(1) > 3  # full parts start new chains as the deltas outgrow the store


def test_a_journal_nothing_stores_is_dropped_for_a_full_part_not_kept_growing() -> None:
    store, counts = _store(), Counter[Any]()
    store.max_pending = 100
    store.parts()
    store.saved()  # journaling from here; no part is stored after (a full disk, say)
    # Each prediction comes and, the store full, evicts one: up to 4 changes each (came,
    # left, remembered given up, and forgotten once 200 are remembered).
    for i in range(JOURNAL_SLACK // 8):
        store.add(f"p{i}", ("m", "1", 0, float(i), i, 0), RECORD, counts)
    store.bound_journal()
    assert store.journal is not None  # within what a full part holds, plus the slack
    assert len(store.journal) > JOURNAL_SLACK // 4
    for i in range(JOURNAL_SLACK // 8, JOURNAL_SLACK):
        store.add(f"p{i}", ("m", "1", 0, float(i), i, 0), RECORD, counts)
    store.bound_journal()
    assert store.journal is None
    assert store.parts().full  # what it journaled is in a full part instead


def test_a_restored_store_does_not_sweep_a_returned_prediction_by_its_first_arrival() -> None:
    # An id that left and came back after a full part (nothing remembers it): the full
    # part's coverage entry is of its first arrival, and the restored store must not keep
    # it beside the delta's entry of its return (a verdict at the first arrival's time).
    live = _store()
    live.remember, counts = 0, Counter[Any]()
    live.add("x", ("m", "1", 0, 0.0, 0, 0), RECORD, counts)
    full = live.parts()
    live.saved()
    live.take(Label("x", 1, None, 1.0, RECORD), counts)  # joined, covered
    live.sweep(10.0)  # drops the order entry of x, which left
    live.add("x", ("m", "1", 0, 1000.0, 1, 0), RECORD, counts)  # x again, at 1000
    last = live.parts()
    live.saved()
    copy = _store()
    copy.remember = 0
    stored = {**full.blobs, **last.blobs}
    copy.restore(stored[last.ids[0]], [stored[part] for part in last.ids[1:]])
    live.coverage.clear()
    live.sweep(100.0)  # x came at 1000: not overdue yet
    copy.sweep(100.0)
    assert live.coverage == copy.coverage == []
    assert list(copy.due) == list(live.due) == [(1000.0, "x")]


def test_a_full_part_not_stored_is_followed_by_a_full_part_not_a_delta_on_the_old_chain() -> None:
    # Saving a full part sends tombstones for the parts of the chain before it (the
    # changelog), and a flush that times out may have sent them: the next part cannot be a
    # delta on that chain, which would name parts gone.
    store, counts = _store(), Counter[Any]()
    store.remember, store.max_pending = 0, 1000
    first = store.parts()
    store.saved()
    for i in range(10):  # ten come and go: twenty changes in a store now empty
        store.add(f"a{i}", ("m", "1", 0, float(i), i, 0), RECORD, counts)
        store.take(Label(f"a{i}", 1, None, float(i), RECORD), counts)
    assert store.parts().full  # not stored
    for i in range(10):  # the store grows: thirty changes are fewer than four times ten
        store.add(f"b{i}", ("m", "1", 0, float(i), i, 0), RECORD, counts)
    parts = store.parts()
    assert first.ids[0] not in parts.ids
    assert parts.full


def test_a_prediction_that_came_back_is_evicted_and_expired_by_its_return() -> None:
    # Nothing remembers a joined id (remember 0, or forgotten since): its prediction may
    # come again. The live store's orders still hold its first arrival's entry; a store
    # restored from its parts does not, so the two evict and expire differently.
    def came_back(max_pending: int) -> JoinStore:
        store, counts = _store(), Counter[Any]()
        store.remember, store.max_pending = 0, max_pending
        store.add("x", ("m", "1", 0, 0.0, 0, 0), RECORD, counts)
        store.take(Label("x", 1, None, 1.0, RECORD), counts)
        store.add("y", ("m", "1", 0, 2.0, 1, 0), RECORD, counts)
        store.add("x", ("m", "1", 0, 1000.0, 2, 0), RECORD, counts)  # x again, after y
        return store

    live = came_back(2)
    parts = live.parts()
    copy = _store()
    copy.remember, copy.max_pending = 0, 2
    copy.restore(parts.blobs[parts.ids[0]])
    for store in (live, copy):
        store.add("z", ("m", "1", 0, 1001.0, 3, 0), RECORD, Counter[Any]())
    assert list(copy.pending) == ["x", "z"]  # y, the oldest, evicted
    assert list(live.pending) == list(copy.pending)

    live = came_back(40)
    live.expire(600.0, Counter[Any]())  # gives up what came before 100
    assert list(live.pending) == ["x"]  # x came (back) at 1000
