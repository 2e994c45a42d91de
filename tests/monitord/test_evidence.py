"""Each evaluation names the exact offset ranges of the rows its window covers."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import orjson

from connectors.stream import Record
from detectors.calibration import REPLICATE_ROWS
from detectors.nulls import SHARED_COUNT_LAWS
from monitord.config import parse_config
from monitord.events import decode
from monitord.monitor import Monitor, OffsetRange


def test_window_offsets_follow_the_partitions_its_rows_came_from() -> None:
    config = parse_config({"detection": {"warmup_events": 100, "window_size": 100}})
    rng = np.random.default_rng(2)
    # One model's rows: 200 from partition 0, 50 from partition 1, then partition 0 again.
    sources = [("in", 0, o) for o in range(200)] + [("in", 1, o) for o in range(50)]
    sources += [("in", 0, o) for o in range(200, 450)]
    records = [
        Record(
            topic, partition, offset, b"m", orjson.dumps({"model": "m", "features": {"x": x}}), 0
        )
        for (topic, partition, offset), x in zip(
            sources, rng.normal(size=len(sources)).tolist(), strict=True
        )
    ]
    monitor = Monitor(config, lambda m, v: None)
    windows = {}
    for first in range(0, len(records), 70):  # batches that do not align with windows
        batch = decode(records[first : first + 70], config.events, monitor.columns_for)
        for group in batch.groups.values():
            for evaluation in monitor.update(group).evaluations:
                windows[evaluation.result.row] = (evaluation.offsets, evaluation.last_record)
    # Detection starts after the 100 warm-up rows: window rows 0-99 are stream rows 100-199.
    assert windows[99] == ((OffsetRange("in", 0, 100, 199),), records[199])
    assert windows[199] == (
        (OffsetRange("in", 0, 200, 249), OffsetRange("in", 1, 0, 49)),
        records[299],
    )
    assert windows[299] == ((OffsetRange("in", 0, 250, 349),), records[399])


def test_a_version_keeps_where_its_rows_came_from_not_their_bytes() -> None:
    """Windows reach back into earlier batches for their offsets only: a batch's event
    bytes are freed with it (they were kept for the last window's rows: 1.4 KB an event
    at 50 features, most of a version's memory)."""
    config = parse_config({"detection": {"warmup_events": 200, "window_size": 500}})
    rng = np.random.default_rng(4)
    padding = "p" * 20_000  # an unmonitored text field, so each event is ~20 KB
    monitor = Monitor(config, lambda m, v: None)
    tracemalloc.start()
    try:
        for batch in range(4):
            records = [
                Record(
                    "in",
                    0,
                    batch * 1000 + i,
                    b"m",
                    orjson.dumps({"model": "m", "features": {"x": x}, "note": padding}),
                    0,
                )
                for i, x in enumerate(rng.normal(size=1000).tolist())
            ]
            for group in decode(records, config.events, monitor.columns_for).groups.values():
                assert monitor.update(group).bad == []
            del records, group
        # What the process shares between versions (drawn bootstrap rows, count laws) is
        # not this version's: drop the shared caches' own references before measuring.
        REPLICATE_ROWS.clear()
        SHARED_COUNT_LAWS.clear()
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert monitor.versions["m", "unversioned"].detectors is not None  # detecting
    # The last window's ~600 rows of 20 KB would be 12 MB.
    assert held < 3 * 2**20, held
