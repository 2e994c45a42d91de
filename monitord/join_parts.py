"""A join store's checkpoint in parts: a full part, then the changes after it.

A partition's `monitord.join_store.JoinStore` holds up to ``labels.max_pending`` predictions
and ``labels.remember_joined`` joined ids (200,000 each by default): written whole at every
checkpoint it was 15 MB at 200,000 predictions, and a full run of a million labelled events
spent a third of its time writing it. So a checkpoint writes the store's *changes* since
the last stored part (a delta: the predictions that came and went, the ids remembered and
forgotten), and a full part only when the deltas since the last full one hold more changes
than `FULL_AFTER` times the entries of the store. The checkpoint names its chain of part ids,
the full one first; restoring reads the full part and applies each delta in order.

Part ids are ``<token>/<n>``: a new full part draws a new random token, and every part
taken counts ``n`` on, stored or not. So a part whose checkpoint failed to store (a Kafka
flush that timed out after it sent) is never confused with the one stored after it, and a
partition's new owner (who starts with a full part) never writes over its old owner's parts.

What a delta carries for the two large dictionaries (both in arrival order, the order a
restored store needs): the ids added since are a suffix of the dictionary's order (it only
appends), so they are found from its end; the ids that left are journaled as they leave.
The small parts of the store (labels come before their predictions, ids set aside, clocks)
are in every part whole.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FULL_AFTER = 4
"""A full part once the deltas since the last one hold more changes than this many times
the store's entries (restoring reads at most about this much more than one full part)."""
MAX_DELTAS = 64
"""A full part after this many deltas, whatever their size (a bound on a chain's length)."""
JOURNAL_SLACK = 100_000
"""Changes journaled beyond `FULL_AFTER` times the store's entries before the journal is
dropped for a full part: what an unstored store (checkpoints off, a full disk) may keep."""


@dataclass(frozen=True)
class JoinParts:
    """A partition's join store as a checkpoint names it.

    ``ids`` are the parts in order, the full one first; ``blobs`` holds the parts to store
    when saving (the others are stored already) and every part when loaded.
    """

    ids: tuple[str, ...]
    blobs: Mapping[str, bytes]

    def missing(self) -> list[str]:
        return [part for part in self.ids if part not in self.blobs]

    def in_order(self) -> list[bytes]:
        return [self.blobs[part] for part in self.ids]

    @property
    def full(self) -> bool:
        """Whether the part to store is a full one (the parts before it are garbage)."""
        return self.ids[0] in self.blobs


@dataclass
class JoinJournal:
    """The event ids whose entries changed since the last stored part."""

    added: list[str] = field(default_factory=list)  # predictions come
    left: list[str] = field(default_factory=list)  # predictions joined or given up
    remembered: list[str] = field(default_factory=list)  # joined ids added or changed
    forgotten: list[str] = field(default_factory=list)  # joined ids dropped (the oldest)
    swept: list[str] = field(default_factory=list)  # predictions found overdue

    def __len__(self) -> int:
        return (
            len(self.added)
            + len(self.left)
            + len(self.remembered)
            + len(self.forgotten)
            + len(self.swept)
        )


def _added(entries: dict[str, Any], since: set[str]) -> dict[str, Any]:
    """The entries (re)inserted since the last part, in their order: the longest end of
    the dictionary (it only appends) made of ids in ``since``, the ids journaled. An id
    before that end was there at the last part and is either unchanged or changed in
    place; one in the end put back at the end again keeps the order."""
    count = sum(1 for _ in itertools.takewhile(since.__contains__, reversed(entries)))
    # Read off the end in order, not looked up id by id: a lookup per id in a dictionary
    # of 10^5-10^6 entries is a cache miss each (20 ms for 100,000; this is 4x faster).
    last = list(itertools.islice(reversed(entries.items()), count))
    last.reverse()
    return dict(last)


def delta(
    pending: dict[str, Any],
    done: dict[str, Any],
    overdue: set[str],
    journal: JoinJournal,
) -> dict[str, Any]:
    """The changes of a store's three journaled collections since its last stored part."""
    # By C-level passes (map, filter, zip): a delta holds up to a checkpoint interval of
    # changes, and is taken while the loop waits.
    remembered = set(journal.remembered)
    new_done = _added(done, remembered)
    in_place = sorted(remembered.difference(new_done))  # usually none
    return {
        "pending": _added(pending, set(journal.added)),
        # Ids that left (any back since is in "pending", applied after): not looked up
        # in the store to leave those out, a cache miss each.
        "left": journal.left,
        "done": new_done,
        # Joined ids whose label changed in place (their place in the order kept).
        "relabelled": {event_id: done[event_id] for event_id in in_place if event_id in done},
        "forgotten": journal.forgotten,  # as "left": any remembered since is in "done"
        "overdue": list(dict.fromkeys(filter(overdue.__contains__, journal.swept))),
    }


def apply(
    data: Mapping[str, Any],
    pending: dict[str, Any],
    done: dict[str, Any],
    overdue: set[str],
) -> list[str]:
    """Apply a `delta` (as loaded from JSON) to the three collections, in place; returns
    the ids of the predictions it added, in order (their pending entries still as JSON)."""
    left = data["left"]
    for event_id in left:
        pending.pop(event_id, None)
    overdue.difference_update(left)
    added = data["pending"]
    for event_id, entry in added.items():
        pending.pop(event_id, None)  # back after it left: now last in arrival order
        pending[event_id] = entry
    overdue.difference_update(added)
    overdue.update(data["overdue"])
    for event_id in data["forgotten"]:
        done.pop(event_id, None)
    done.update(data["relabelled"])
    for event_id, label in data["done"].items():
        done.pop(event_id, None)
        done[event_id] = label
    return list(added)


@dataclass
class PartChain:
    """The parts a store's last stored checkpoint reads, and the part taken since."""

    ids: tuple[str, ...] = ()  # stored: the full part first
    changes: int = 0  # changes in the stored deltas
    token: str = ""
    taken: int = 0  # parts taken under ``token``, stored or not
    _next: tuple[tuple[str, ...], int] | None = None  # the chain and changes once stored

    def wants_full(self, changes: int, entries: int) -> bool:
        """Whether the next part should be full, with ``changes`` to store in a delta
        and ``entries`` in the store."""
        return (
            not self.ids
            or len(self.ids) > MAX_DELTAS
            or self.changes + changes > FULL_AFTER * entries
        )

    def take(self, blob: bytes, full: bool, changes: int) -> JoinParts:
        """Name the part ``blob`` (a full part, or a delta of ``changes``)."""
        if full:
            self.token, self.taken = secrets.token_hex(8), 0
            # Storing a full part drops the chain before it (the changelog's tombstones may
            # be sent though the store failed): the next part is full until one is stored.
            self.ids, self.changes = (), 0
        part = f"{self.token}/{self.taken}"
        self.taken += 1
        if full:
            self._next = (part,), 0
        else:
            self._next = (*self.ids, part), self.changes + changes
        return JoinParts(self._next[0], {part: blob})

    def stored(self) -> None:
        """The part last taken is stored: the chain reads it from now on."""
        if self._next is not None:
            self.ids, self.changes = self._next
            self._next = None

    def forget(self) -> None:
        """A restored store: its next part is full (a new owner writes its own chain)."""
        self.ids, self.changes, self._next = (), 0, None


__all__ = [
    "FULL_AFTER",
    "JOURNAL_SLACK",
    "MAX_DELTAS",
    "JoinJournal",
    "JoinParts",
    "PartChain",
    "apply",
    "delta",
]
