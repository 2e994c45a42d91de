"""The hostile-input suite on the real broker: `monitord run` over every kind of bad input
(tests/hostile/kinds.py) interleaved with valid traffic of several models, and over the same
traffic without the bad records.

It checks what the README promises of bad records: the daemon never exits, every bad record
is dead-lettered exactly once with its reason and source offset, every valid record is
counted, the outputs equal the clean run's (offsets mapped to the clean topic), events with
a time not to be believed are counted as untimed, and peak RSS stays under `PEAK_RSS_MIB`.
Default: 400,000 records; ``--hostile-long``: 1,000,000.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.broker import EmbeddedBroker
from connectors.kafka import read_topic
from connectors.stream import Record
from monitord.config import EventFields
from monitord.dead_letter import ERROR_HEADERS, TRUNCATED_HEADER, VALUE_BYTES_HEADER
from monitord.events import PREDICTION, Columns, decode
from monitord.repartition import SOURCE_HEADERS
from tests.faults.harness import (
    Daemon,
    Offsets,
    Topic,
    admin_url,
    assert_same_outputs,
    daemon_config,
    daemons,
    get,
    published,
    until,
)
from tests.hostile.kinds import KINDS, VICTIM, Kind, Target
from tests.hostile.mix import T0, Mix, record_rng

PEAK_RSS_MIB = 512
"""Peak resident memory of `monitord run` over the hostile traffic (README, "Input events")."""
# (records, of each kind, of each heavy kind)
DEFAULT = (400_000, 150, 6)
LONG = (1_000_000, 600, 20)


@pytest.fixture
def offsets(broker: EmbeddedBroker) -> Iterator[Offsets]:
    reader = Offsets(broker.bootstrap)
    yield reader
    reader.close()


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url``/metrics: (name, sorted labels) -> value."""
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def by_label(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str
) -> dict[str, int]:
    """Non-zero samples of ``name`` by the value of ``label``."""
    return {
        dict(labels)[label]: int(value)
        for (sample, labels), value in samples.items()
        if sample == name and value
    }


def peak_rss_mib(daemon: Daemon) -> float:
    """VmHWM: the process's peak resident set so far."""
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) / 1024


def committed(
    offsets: Offsets,
    group: str,
    topic: Topic,
    records: int,
    timeout_s: float,
    running: list[Daemon],
) -> None:
    until(
        lambda: offsets.committed(group, topic) == records,
        f"{records} records of {topic.topic} committed by {group}",
        timeout_s,
        running,
    )


def counted(daemon: Daemon, records: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The daemon's metrics once it has counted ``records`` records consumed (the batch
    metrics are updated after the batch's offsets are committed)."""
    url = admin_url(daemon)
    until(
        lambda: metrics(url)[("monitord_events_consumed_total", ())] == records,
        f"{records} records counted",
        30,
        daemon,
    )
    return metrics(url)


def dead_letter_mismatches(letters: list[Record], mix: Mix) -> list[str]:
    """What differs between the dead letters and the bad records produced (one line each)."""
    problems: list[str] = []
    found: dict[tuple[int, int], Record] = {}
    for letter in letters:
        headers = dict(letter.headers)
        source = (int(headers[SOURCE_HEADERS[1]]), int(headers[SOURCE_HEADERS[2]]))
        if headers[SOURCE_HEADERS[0]] != mix.topic.encode():
            problems.append(f"{source}: from topic {headers[SOURCE_HEADERS[0]]!r}")
        if source in found:
            problems.append(f"{source}: dead-lettered twice")
        found[source] = letter
    problems += [f"{s}: dead-lettered, yet valid" for s in sorted(set(found) - set(mix.bad))]
    for source, bad in sorted(mix.bad.items()):
        name = bad.kind.name
        if source not in found:
            problems.append(f"{source} ({name}): no dead letter")
            continue
        letter = found[source]
        key, made, theirs = bad.made(mix.seed)
        value = made or b""
        got = dict(letter.headers)
        if got[ERROR_HEADERS[0]] != str(bad.kind.reason).encode():
            problems.append(f"{source} ({name}): reason {got[ERROR_HEADERS[0]]!r}")
        truncated = got.get(TRUNCATED_HEADER)
        if truncated != (None if bad.kind.truncated is None else bad.kind.truncated.encode()):
            problems.append(f"{source} ({name}): truncated {truncated!r}")
        kept = letter.value or b""
        if value[: len(kept)] != kept or (truncated is None and len(kept) != len(value)):
            problems.append(f"{source} ({name}): value of {len(kept)} bytes differs")
        if truncated is not None and got.get(VALUE_BYTES_HEADER) != str(len(value)).encode():
            problems.append(f"{source} ({name}): value bytes {got.get(VALUE_BYTES_HEADER)!r}")
        if b"key" not in (truncated or b"") and (
            letter.key != key or list(letter.headers[: len(theirs)]) != theirs
        ):
            problems.append(f"{source} ({name}): key or headers differ")
    return problems


def in_clean_offsets(outputs: dict[str, dict[str, Any]], mix: Mix) -> dict[str, dict[str, Any]]:
    """The hostile run's outputs with their data ranges at the clean topic's offsets."""

    def moved(offsets: dict[str, Any]) -> dict[str, Any]:
        assert offsets["topic"] == mix.topic
        partition = offsets["partition"]
        return {
            **offsets,
            "topic": mix.clean_topic,
            "first_offset": mix.clean_offset(partition, offsets["first_offset"]),
            "last_offset": mix.clean_offset(partition, offsets["last_offset"]),
        }

    return {
        key: {
            **data,
            "offset": moved(data["offset"]),
            "offsets": [moved(o) for o in data["offsets"]],
        }
        for key, data in outputs.items()
    }


def without_config_hash(outputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The two runs' configs differ in topic and group names, so in their hash."""
    return {
        key: {k: v for k, v in data.items() if k != "config_hash"} for key, data in outputs.items()
    }


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_each_kind_decodes_as_its_table_entry_says(kind: Kind) -> None:
    """Without a broker, for every model a kind may name: the reason (None: a valid row)
    and whether the event's own time is believed, as the daemon decides them once the
    model's columns are known (they are, by design of the mix, before hostile records)."""
    columns = {
        "m0": Columns(("x", "y", "z", PREDICTION), ()),
        VICTIM: Columns(("x", PREDICTION), ("c",)),
    }
    for model in {"any": ("m0", VICTIM), "victim": (VICTIM,), "none": ("m0",)}[kind.names]:
        key, value, headers = kind.make(record_rng(1, 2), Target(model, T0 + 100))
        record = Record("in", 0, 0, key, value, (T0 + 100) * 1000, tuple(headers))
        decoded = decode([record], EventFields(), lambda m, v: columns.get(m))
        reason, untimed = None, False
        if decoded.bad:
            reason = decoded.bad[0].reason
        else:
            (group,) = decoded.groups.values()
            assert group.columns is columns[model], f"{model}/{group.version}: a new version"
            wrong = group.columns.arrays(group)[2]
            reason = "wrong_type" if wrong else None
            untimed = group.event_times()[1] == 1
        assert (reason, untimed) == (kind.reason, kind.untimed), model


@pytest.mark.kafka
@pytest.mark.slow
def test_hostile_records_are_dead_lettered_once_and_change_no_output(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    offsets: Offsets,
    hostile_long: bool,
) -> None:
    began = time.monotonic()
    total, per_kind, per_heavy_kind = LONG if hostile_long else DEFAULT
    mix = Mix(unique_name("hostile"), unique_name("clean"), total, per_kind, per_heavy_kind)
    hostile_group, clean_group = unique_name("hostile"), unique_name("clean")
    hostile_config = daemon_config(
        tmp_path,
        "hostile",
        broker.bootstrap,
        mix.hostile(),
        hostile_group,
        checkpoint={"store": "local", "interval_events": 50_000, "interval_s": 1.0},
    )
    clean_topic = Topic(mix.clean_topic, mix.partitions, 0)
    clean_config = daemon_config(
        tmp_path, "clean", broker.bootstrap, clean_topic, clean_group, checkpoint={"store": "none"}
    )
    timeout_s = 120 + mix.total / 2000
    mix.produce(broker.bootstrap, stop=mix.head)
    with daemons() as start:
        hostile = start(hostile_config, tmp_path / "hostile.log")
        clean = start(clean_config, tmp_path / "clean.log")
        running = [hostile, clean]
        committed(offsets, hostile_group, mix.hostile(), mix.head, timeout_s, running)
        committed(offsets, clean_group, clean_topic, mix.head, timeout_s, running)
        produced = time.monotonic()
        mix.produce(broker.bootstrap)
        produced = time.monotonic() - produced
        samples = []
        for daemon, group, topic in (
            (hostile, hostile_group, mix.hostile()),
            (
                clean,
                clean_group,
                mix.clean(),
            ),
        ):
            committed(offsets, group, topic, topic.total, timeout_s, running)
            samples.append(counted(daemon, topic.total))
        peaks = [peak_rss_mib(hostile), peak_rss_mib(clean)]
        for daemon in (hostile, clean):
            daemon.signal(signal.SIGTERM)
        codes = [daemon.process.wait(timeout=60) for daemon in (hostile, clean)]
    assert codes == [0, 0], hostile.tail() + clean.tail()
    for log in ("hostile.log", "clean.log"):
        assert "Traceback" not in (tmp_path / log).read_text(errors="replace"), log

    # Every bad record dead-lettered once, with its reason, source offset and bytes.
    letters = read_topic(broker.bootstrap, f"{hostile_group}.dead-letter", timeout_s=120)
    assert dead_letter_mismatches(letters, mix) == []
    assert len(letters) == len(mix.bad) == sum(mix.reasons.values())

    # Every valid record counted, as its model's, by both runs; the bad ones by reason.
    hostile_samples, clean_samples = samples
    for run in samples:
        assert by_label(run, "monitord_model_events_total", "model") == mix.valid
        assert by_label(run, "monitord_untimed_events_total", "model") == mix.untimed
    assert by_label(hostile_samples, "monitord_bad_records_total", "reason") == mix.reasons
    assert by_label(clean_samples, "monitord_bad_records_total", "reason") == {}

    # The same outputs as without the bad records, and enough of them to mean something.
    expected = without_config_hash(published(broker.bootstrap, clean_group))
    got = without_config_hash(in_clean_offsets(published(broker.bootstrap, hostile_group), mix))
    assert_same_outputs(got, expected)
    firing = Counter(d["model"] for d in expected.values() if d.get("status") == "firing")
    assert set(firing) == {*(f"m{i}" for i in range(mix.models)), "victim"}, firing
    assert any("idempotency_key" in data for data in expected.values())

    assert peaks[0] < PEAK_RSS_MIB, f"peak RSS {peaks[0]:.0f} MiB"
    kinds = Counter(bad.kind.name for bad in mix.bad.values())
    print(
        f"\nhostile suite: {mix.total} records, {len(KINDS)} kinds "
        f"({len(kinds)} dead-lettered), {len(mix.bad)} bad -> {len(letters)} dead letters "
        f"{dict(sorted(mix.reasons.items()))}, valid {sum(mix.valid.values())} "
        f"(untimed {sum(mix.untimed.values())}), outputs {len(expected)}, peak RSS hostile "
        f"{peaks[0]:.0f} MiB clean {peaks[1]:.0f} MiB, rest produced in {produced:.1f}s, "
        f"total {time.monotonic() - began:.1f}s"
    )
