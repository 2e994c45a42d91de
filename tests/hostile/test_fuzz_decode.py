"""The decode path under fuzzed and recorded hostile records (Hypothesis, derandomized).

Properties, for any batch of records:
- decoding never raises, and every record is either one row of one group or one bad record;
- the value rule is per row: a row decodes to the same values, and is wrong or not, whether
  it comes alone or in any batch, and whether its version's columns were known or inferred;
- values are bounded: numbers finite or NaN, categories text of at most 256 characters;
- event times are finite instants of the calendar whatever the stamps and record times;
- a dead letter of any bad record fits the producer's limit.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.stream import Record
from detectors.profile import CATEGORY_CHARS
from monitord.clock import EARLIEST_S, LATEST_S
from monitord.config import EventFields, parse_config
from monitord.dead_letter import FRAMING_BYTES, dead_letter, producer_request_bytes
from monitord.events import Columns, EventGroup, decode
from monitord.monitor import Monitor, MonitorState
from tests.hostile.records import batches, corpus_batches, steady_streams

FIELDS = EventFields(max_event_bytes=4096)
BUDGET = producer_request_bytes(FIELDS) - FRAMING_BYTES


def check_batch(records: list[Record]) -> None:
    decoded = decode(records, FIELDS)
    rows = [r.offset for group in decoded.groups.values() for r in group.records]
    bad = [b.record.offset for b in decoded.bad]
    assert sorted(rows + bad) == [r.offset for r in records]  # each record exactly once
    for item in decoded.bad:
        key, value, headers = dead_letter(item, BUDGET)
        size = len(key or b"") + len(value) + sum(len(k.encode()) + len(v) for k, v in headers)
        assert size <= BUDGET
    for group in decoded.groups.values():
        check_group(group, records)


def check_group(group: EventGroup, records: list[Record]) -> None:
    columns = Columns.infer(group.features, group.predictions, with_prediction=True)
    numeric, categorical, wrong = columns.arrays(group)
    n = len(group)
    assert numeric.shape == (n, len(columns.numeric))
    assert categorical.shape == (n, len(columns.categorical))
    assert set(wrong) <= set(range(n))
    assert not np.isinf(numeric).any()
    for value in categorical.reshape(-1).tolist():
        assert value is None or (isinstance(value, str) and len(value) <= CATEGORY_CHARS)
    times, untimed = group.event_times()
    assert ((times >= EARLIEST_S) & (times <= LATEST_S)).all()
    assert 0 <= untimed <= n
    # Alone, or with the columns known at decode time: the same row, the same verdict.
    for i, record in enumerate(group.records):
        for lookup in (lambda m, v: None), (lambda m, v: columns):
            (alone,) = decode([record], FIELDS, lookup).groups.values()
            one_numeric, one_categorical, one_wrong = columns.arrays(alone)
            assert (0 in one_wrong) == (i in wrong)
            if i not in wrong:
                assert _same(one_numeric[0], numeric[i])
                assert one_categorical[0].tolist() == categorical[i].tolist()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@given(batches())
def test_fuzzed_batches_decode_by_the_rule(records: list[Record]) -> None:
    check_batch(records)


@pytest.mark.parametrize("name", sorted(corpus_batches()))
def test_the_corpus_decodes_by_the_rule(name: str) -> None:
    """Records that once crashed or misled the decode path, kept as regression inputs."""
    check_batch(corpus_batches()[name])


MONITORED = parse_config(
    {
        "detection": {"warmup_events": 50, "window_size": 20, "window_seconds": None},
        "events": {"max_event_bytes": 4096},
        "limits": {"max_models": 2, "max_versions_per_model": 2, "max_columns_per_model": 4},
    }
)


@given(st.lists(batches(), min_size=1, max_size=12) | steady_streams())
def test_fuzzed_batches_are_monitored_or_refused_once(stream: list[list[Record]]) -> None:
    """Monitoring never raises on decoded hostile events, refuses or accepts each row once,
    and its state survives a checkpoint's JSON at any point."""
    monitor = Monitor(MONITORED, lambda model, version: None)
    for records in stream:
        decoded = decode(records, MONITORED.events, monitor.columns_for)
        for group in decoded.groups.values():
            update = monitor.update(group)
            bad = [b.record.offset for b in update.bad]
            assert len(set(bad)) == len(bad)
            assert set(bad) <= {r.offset for r in group.records}
            assert all(b.reason in REASONS for b in update.bad)
        for key in list(monitor.versions):
            state, arrays, captured = monitor.snapshot(key)
            stored = MonitorState.load(orjson.loads(orjson.dumps(state.dump())), "checkpoint")
            found = {profile.profile_id: profile for profile in captured}
            again = Monitor(MONITORED, lambda model, version: None)
            again.restore(records[0].topic_partition, stored, arrays, found.__getitem__)
            assert again.versions[key].columns_status() == monitor.versions[key].columns_status()


REASONS = {"wrong_type", "model_limit", "version_limit", "name_too_long"}
