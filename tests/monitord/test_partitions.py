"""`Partitions`: the offsets of each partition, through fold, checkpoint, commit, reset and
revocation (the worked example of `monitord.partitions`)."""

from __future__ import annotations

from connectors.stream import OffsetReset, Record, TopicPartition, by_partition
from monitord.partitions import Partitions, first_offsets

E3 = TopicPartition("events", 3)
E4 = TopicPartition("events", 4)
LABELS = TopicPartition("labels", 3)


def test_a_partition_is_checkpointed_once_it_moves_and_committed_once() -> None:
    partitions = Partitions()
    partitions.processed({E3: 43})  # offsets 40, 41, 42 folded
    assert partitions.next_offset(E3) == 43
    assert partitions.moved_since_checkpoint(None, set()) == {E3: 43}
    partitions.checkpointed({E3: 43})
    assert partitions.uncommitted() == {E3: 43}
    assert partitions.moved_since_checkpoint(None, set()) == {}  # stored as it stands
    partitions.committed()
    assert partitions.uncommitted() == {}
    partitions.changed(E3)  # a late label changed a version of the partition
    assert partitions.moved_since_checkpoint(None, set()) == {E3: 43}
    assert partitions.moved_since_checkpoint({E4}, set()) == {}  # another partition asked
    partitions.checkpointed({E3: 43})
    assert partitions.moved_since_checkpoint(None, {E3}) == {E3: 43}  # the join changed it


def test_a_reset_moves_the_processed_offset_and_never_commits_the_old_one() -> None:
    partitions = Partitions()
    partitions.processed({E3: 27_000})
    partitions.checkpointed({E3: 27_000})
    partitions.reset(OffsetReset(E3, 27_000, 0, 120, "earliest", 0))
    assert partitions.uncommitted() == {}
    assert partitions.next_offset(E3) == 0
    assert partitions.moved_since_checkpoint(None, set()) == {E3: 0}
    partitions.reset(OffsetReset(E4, 5, 10, 20, "latest", 20))  # never processed: nothing
    assert partitions.next_offset(E4) == 0
    assert partitions.moved_since_checkpoint(None, set()) == {E3: 0}


def test_a_restored_offset_is_committed_once_the_log_is_seen_to_reach_it() -> None:
    partitions = Partitions()
    partitions.restored(E3, 43, label=False)
    partitions.restored(E4, 1_000_043, label=False)  # a broker that lost its log
    assert partitions.uncommitted() == {}  # no end read yet
    assert not partitions.in_log({})
    assert partitions.in_log({E3: 43, E4: 120})
    assert partitions.uncommitted() == {E3: 43}  # E4's end is below its checkpoint
    partitions.committed()
    assert not partitions.in_log({E3: 50, E4: 120})  # committed once
    partitions.reset(OffsetReset(E4, 1_000_043, 0, 120, "latest", 120))
    assert not partitions.in_log({E4: 2_000_000})  # the offset out of range, never
    partitions.restored(E3, 60, label=False)
    partitions.checkpointed({E3: 70})  # a checkpoint commits past it first
    partitions.committed()
    assert not partitions.in_log({E3: 70})


def test_revocation_forgets_everything_of_a_partition() -> None:
    partitions = Partitions()
    partitions.restored(E3, 43, label=False)
    partitions.restored(LABELS, 7, label=True)
    partitions.loaded(E4, False)  # its checkpoint could not be read
    partitions.processed({E3: 50})
    partitions.checkpointed({E3: 50})
    assert partitions.unrestored == {E4}
    assert partitions.label_next() == {LABELS: 7}
    partitions.forget({E3, E4, LABELS})
    assert partitions.unrestored == set()
    assert partitions.uncommitted() == {}
    assert partitions.label_next() == {}
    assert partitions.moved_since_checkpoint(None, set()) == {}
    assert partitions.next_offset(E3) == 0


def test_a_batch_cut_by_a_rebalance_is_read_again_where_the_rebalance_left_it() -> None:
    partitions = Partitions()
    generation = partitions.batch_started()
    held = by_partition(
        Record("events", p, o, None, b"", 0) for p, o in ((3, 40), (4, 7), (3, 41), (4, 8))
    )
    assert first_offsets(held) == {E3: 40, E4: 7}
    partitions.rebalanced({E4})  # E4 moved: positioned by the rebalance callbacks
    assert partitions.generation != generation
    assert partitions.rewind(held, frozenset({E3, E4})) == {E3: 40}
    assert partitions.rewind(held, frozenset({E4})) == {}  # E3 is no longer ours
    partitions.batch_started()
    assert partitions.rewind(held, frozenset({E3, E4})) == {E3: 40, E4: 7}
