"""`monitord replay`: the daemon's own decode -> monitor -> policy path over a file.

Each input row becomes the inference event a producer would have sent, at offset = row
index of a one-partition in-memory topic, so an output's ``row`` is the input row whose
arrival made it fire. A bad row (a JSONL line that is no JSON object, a string in a numeric
column...) is dead-lettered as the daemon would: counted by reason on stderr, written with
its reason to ``--dead-letters`` when given, and the run goes on.

Labels join their predictions as in the daemon (`monitord.labels`): inline, from the row's
label column, or from a second file whose rows carry the event id and the label. Each row of
that file becomes a label record, at its row index, on a label topic of its own (named after
the file). An event's id is its row's ``event_id`` value, or its row index when the file has
no such column.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from connectors.memory import MemorySink, MemorySource, Message
from connectors.stream import Record
from detectors.profile import ReferenceProfile
from monitord.config import Config
from monitord.daemon import Daemon
from monitord.dead_letter import ERROR_HEADERS
from monitord.outputs import JsonLinesPublisher
from monitord.reference import load_profile
from monitord.repartition import SOURCE_HEADERS
from monitord.tabular import BadLine, Row, read_rows_keeping_bad_lines


def events_from_rows(
    rows: Sequence[Row | BadLine],
    model: str,
    version: str,
    prediction_column: str | None,
    config: Config,
    label_column: str | None = None,
) -> list[bytes]:
    """Inference-event JSON for each row (model and version from the row when present); a
    bad line's own bytes, for the daemon to dead-letter. The label is the row's
    ``label_column`` (default ``events.label``); the event id its ``events.event_id``, or
    the row index when no row has one."""
    fields = config.events
    label_column = label_column or fields.label
    reserved = {
        fields.model,
        fields.model_version,
        fields.timestamp,
        fields.event_id,
        fields.label,
        label_column,
        prediction_column,
    }
    ids_in_rows = any(isinstance(row, dict) and fields.event_id in row for row in rows)
    events = []
    for i, row in enumerate(rows):
        if isinstance(row, BadLine):
            events.append(row.raw)
            continue
        event = {
            fields.model: row.get(fields.model, model),
            fields.model_version: str(row.get(fields.model_version, version)),
            fields.features: {k: v for k, v in row.items() if k not in reserved},
            fields.event_id: event_id(row.get(fields.event_id)) if ids_in_rows else str(i),
        }
        if prediction_column and prediction_column in row:
            event[fields.prediction] = row[prediction_column]
        if row.get(label_column) is not None:
            event[fields.label] = row[label_column]
        if fields.timestamp in row:
            event[fields.timestamp] = row[fields.timestamp]
        events.append(orjson.dumps(event))
    return events


def labels_from_rows(
    rows: Sequence[Row | BadLine], config: Config, label_column: str | None = None
) -> list[bytes]:
    """A label record's JSON for each row of a labels file: its event id, its label
    (``label_column``, default ``events.label``) and, when present, its model and timestamp;
    a bad line's own bytes. A row without id or label makes a record the daemon dead-letters
    as it would on a label topic."""
    fields = config.events
    label_column = label_column or fields.label
    records = []
    for row in rows:
        if isinstance(row, BadLine):
            records.append(row.raw)
            continue
        record = {
            fields.event_id: event_id(row.get(fields.event_id)),
            fields.label: row.get(label_column),
        }
        for key in (fields.model, fields.timestamp):
            if row.get(key) is not None:
                record[key] = row[key]
        records.append(orjson.dumps(record))
    return records


def event_id(value: object) -> str | None:
    """An id as text, whichever file it comes from: a CSV types a column of whole numbers as
    floats, so ``17.0`` is ``"17"`` as in a JSONL file's ``17``."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def replay(
    config: Config,
    data: Path,
    out: IO[bytes],
    *,
    model: str,
    version: str = "1",
    profile_path: Path | None = None,
    prediction_column: str | None = "prediction",
    dead_letters_path: Path | None = None,
    label_column: str | None = None,
    labels_path: Path | None = None,
) -> Daemon:
    """Replay ``data`` through the daemon loop, writing outputs to ``out`` as JSON lines
    and dead letters to ``dead_letters_path`` (one JSON object per bad row). Labels come
    from the rows' ``label_column`` (default ``events.label``) and from ``labels_path``."""
    rows = read_rows_keeping_bad_lines(data, config.events)
    label_rows = read_rows_keeping_bad_lines(labels_path, config.events) if labels_path else []
    profile = load_profile(profile_path) if profile_path else None
    values = events_from_rows(rows, model, version, prediction_column, config, label_column)
    topic = data.name
    records = [Record(topic, 0, i, model.encode(), v, 0) for i, v in enumerate(values)]
    label_topic = None
    if labels_path is not None:
        label_topic = labels_path.name if labels_path.name != topic else f"{topic}.labels"
        # At the events' record time: the label gate holds every label until the file's
        # events are all read, so each prediction is in the join store before its label.
        # (A record time of 0 is no label time: the label's is its timestamp column's.)
        label_values = labels_from_rows(label_rows, config, label_column)
        records += [Record(label_topic, 0, i, None, v, 0) for i, v in enumerate(label_values)]
    # Every prediction may wait for its label: the whole file is in memory anyway.
    labels = config.labels.model_copy(
        update={
            "topics": (label_topic,) if label_topic else (),
            "max_pending": max(config.labels.max_pending, len(rows)),
        }
    )
    config = config.model_copy(update={"labels": labels})

    def load(model_name: str, model_version: str) -> ReferenceProfile | None:
        if profile is not None and (profile.model, profile.model_version) == (
            model_name,
            model_version,
        ):
            return profile
        path = config.profile_path(model_name, model_version)
        return load_profile(path) if path else profile

    dead_letters = MemorySink()
    daemon = Daemon(
        config, MemorySource(records), dead_letters, [JsonLinesPublisher(out, owned=False)], load
    )
    daemon.drain()
    letters = dead_letters.messages()
    if dead_letters_path is not None:
        write_dead_letters(letters, dead_letters_path)
    where = f"written to {dead_letters_path}" if dead_letters_path else "see --dead-letters"
    for name, count, noun in (
        (topic, len(rows), "rows"),
        (label_topic, len(label_rows), "label rows"),
    ):
        reasons = Counter(
            dict(letter.headers)[ERROR_HEADERS[0]].decode()
            for letter in letters
            if dict(letter.headers)[SOURCE_HEADERS[0]].decode() == name
        )
        if reasons:
            listed = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
            print(
                f"monitord: {reasons.total()} of {count} {noun} dead-lettered ({listed}); {where}",
                file=sys.stderr,
            )
    if label_topic is not None or daemon.joins.counts:  # labels given, or found inline
        for line in label_summary(daemon, len(rows)):
            print(f"monitord: {line}", file=sys.stderr)
    return daemon


def label_summary(daemon: Daemon, n_rows: int) -> list[str]:
    """What the labels came to: rows labelled, labels not joined (by outcome), and each
    version whose performance was never tested for want of labelled rows."""
    outcomes: Counter[str] = Counter()
    for (_, outcome), n in daemon.joins.counts.items():
        outcomes[outcome] += n
    # A label whose prediction never came waits, unexpired, to the end of the file.
    outcomes["orphan"] += sum(len(store.early) for store in daemon.joins.stores.values())
    outcomes = +outcomes
    joined = outcomes.pop("joined", 0)
    line = f"labels joined to {joined} of {n_rows} rows"
    if outcomes:
        line += "; not joined: " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items()))
    lines = [line]
    if outcomes["late"]:
        lines.append(
            f"{outcomes['late']} labels came more than labels.max_delay_s "
            f"({daemon.config.labels.max_delay_s:g} s) after their prediction; an event "
            "without a timestamp is at time 0 (1970), a label with one at its own"
        )
    needed = daemon.config.performance.warmup_labels
    for (model, version), stream in sorted(daemon.performance.versions.items()):
        if stream.warming_up and stream.reference_rows:  # not a latency stream only
            lines.append(
                f"{model}/{version}: {len(stream.reference_rows)} labelled rows, fewer than "
                f"performance.warmup_labels ({needed}): performance not tested"
            )
    return lines


def write_dead_letters(letters: Sequence[Message], path: Path) -> None:
    """One JSON object per dead letter: row, reason, detail and the event as text; ``file``
    names the file the row is of (the data file, or the labels file)."""
    with path.open("wb") as handle:
        for letter in letters:
            headers = dict(letter.headers)
            line = {
                "file": headers[SOURCE_HEADERS[0]].decode(errors="replace"),
                "row": int(headers[SOURCE_HEADERS[2]]),
                "reason": headers[ERROR_HEADERS[0]].decode(),
                "detail": headers[ERROR_HEADERS[1]].decode(errors="replace"),
                "event": letter.value.decode(errors="replace"),
            }
            handle.write(orjson.dumps(line) + b"\n")


__all__ = [
    "event_id",
    "events_from_rows",
    "label_summary",
    "labels_from_rows",
    "replay",
    "write_dead_letters",
]
