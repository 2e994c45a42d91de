"""`monitord replay`: the daemon's own decode -> monitor -> policy path over a file.

Each input row becomes the inference event a producer would have sent, at offset = row
index of a one-partition topic read lazily from the file (`connectors.feed.FeedSource`,
batch by batch: memory follows the windows and the reference, not the file), so an
output's ``row`` is the input row whose arrival made it fire. A bad row (a JSONL line that
is no JSON object, a string in a numeric column...) is dead-lettered as the daemon would:
counted by reason on stderr, written with its reason to ``--dead-letters`` when given, and
the run goes on.

Labels join their predictions as in the daemon (`monitord.labels`): inline, from the row's
label column, or from a second file whose rows carry the event id and the label. Each row of
that file becomes a label record, at its row index, on a label topic of its own (named after
the file). An event's id is its row's ``event_id`` value, or its row index when the file has
no such column.

Outputs go out as JSON lines (the contract for machines) or as a table for a person
(`monitord.console`); a summary (`monitord.tally`) and a progress line go to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from connectors.feed import FeedSource
from connectors.stream import Record, TopicPartition
from detectors.profile import ReferenceProfile
from monitord.columnar import ColumnarRows, eligible, not_features
from monitord.config import Config
from monitord.console import Progress, TableWriter
from monitord.daemon import Daemon
from monitord.dead_letter import ERROR_HEADERS
from monitord.monitor import ProfileLoader
from monitord.outputs import JsonLinesPublisher, Publisher
from monitord.reference import load_profile
from monitord.repartition import SOURCE_HEADERS
from monitord.report import render_report
from monitord.results import StreamResult
from monitord.tabular import ABSENT, BATCH_ROWS, Batch, DataError, DataFile, event_id, open_data
from monitord.tally import ReplayTally, TallyingPolicy

Format = Literal["jsonl", "table"]


def events_from_batch(
    batch: Batch,
    model: str,
    version: str,
    prediction_column: str | None,
    config: Config,
    label_column: str | None = None,
    ids_in_rows: bool = False,
) -> list[bytes]:
    """Inference-event JSON for each row of ``batch`` (model and version from the row when
    it has them); a bad line's own bytes, for the daemon to dead-letter. The label is the
    row's ``label_column`` (default ``events.label``); the event id its ``events.event_id``
    when ``ids_in_rows`` (some row of the file has one), else the row index."""
    fields = config.events
    label_column = label_column or fields.label
    reserved = not_features(fields, prediction_column, label_column)
    columns = batch.columns
    features = [(name, values) for name, values in columns.items() if name not in reserved]
    absent = [ABSENT] * batch.size
    models = columns.get(fields.model, absent)
    versions = columns.get(fields.model_version, absent)
    ids = columns.get(fields.event_id, absent)
    predictions = columns.get(prediction_column, absent) if prediction_column else absent
    labels = columns.get(label_column, absent)
    stamps = columns.get(fields.timestamp, absent)
    events = []
    for i in range(batch.size):
        bad = batch.bad.get(i)
        if bad is not None:
            events.append(bad.raw)
            continue
        row_model, row_version = models[i], versions[i]
        event: dict[str, Any] = {
            fields.model: model if row_model is None or row_model is ABSENT else row_model,
            fields.model_version: (
                version if row_version is None or row_version is ABSENT else str(row_version)
            ),
            fields.features: {name: v[i] for name, v in features if v[i] is not ABSENT},
            fields.event_id: (
                event_id(None if ids[i] is ABSENT else ids[i])
                if ids_in_rows
                else str(batch.start + i)
            ),
        }
        if predictions[i] is not ABSENT:
            event[fields.prediction] = predictions[i]
        if labels[i] is not None and labels[i] is not ABSENT:
            event[fields.label] = labels[i]
        if stamps[i] is not ABSENT:
            event[fields.timestamp] = stamps[i]
        events.append(orjson.dumps(event))
    return events


def labels_from_batch(batch: Batch, config: Config, label_column: str | None = None) -> list[bytes]:
    """A label record's JSON for each row of a labels file's batch: its event id, its label
    (``label_column``, default ``events.label``) and, when present, its model and timestamp;
    a bad line's own bytes. A row without id or label makes a record the daemon dead-letters
    as it would on a label topic."""
    fields = config.events
    label_column = label_column or fields.label
    absent = [ABSENT] * batch.size
    ids = batch.columns.get(fields.event_id, absent)
    labels = batch.columns.get(label_column, absent)
    extra = [(key, batch.columns.get(key, absent)) for key in (fields.model, fields.timestamp)]
    records = []
    for i in range(batch.size):
        bad = batch.bad.get(i)
        if bad is not None:
            records.append(bad.raw)
            continue
        record = {
            fields.event_id: event_id(None if ids[i] is ABSENT else ids[i]),
            fields.label: None if labels[i] is ABSENT else labels[i],
        }
        for key, values in extra:
            if values[i] is not None and values[i] is not ABSENT:
                record[key] = values[i]
        records.append(orjson.dumps(record))
    return records


def _records(
    data: DataFile,
    topic: str,
    key: bytes | None,
    values: Callable[[Batch], list[bytes]],
    batch_rows: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """The file's rows as records at offset = row index, read batch by batch."""
    for batch in data.batches(batch_rows):
        for i, value in enumerate(values(batch), start=batch.start):
            yield Record(topic, 0, i, key, value, 0)
        if progress is not None:
            progress(batch.start + batch.size)


@dataclass
class _Inputs:
    """What a replay reads: the data file as a topic and, given, the labels file as one."""

    data: DataFile
    topic: str
    labels: DataFile | None
    label_topic: str | None
    by_column: ColumnarRows | None  # the data file's rows by column, when it qualifies
    feeds: dict[TopicPartition, tuple[Iterator[Record], int]]


def _inputs(
    config: Config,
    data: Path,
    labels_path: Path | None,
    settings: _Settings,
    progress: Callable[[int], None] | None,
) -> _Inputs:
    """The files opened and fed as topics (records at offset = row index)."""
    data_file = open_data(data, config.events)
    labels_file = open_data(labels_path, config.events) if labels_path else None
    topic = data.name
    ids_in_rows = data_file.has_column(config.events.event_id)

    def event_values(batch: Batch) -> list[bytes]:
        return events_from_batch(
            batch,
            settings.model,
            settings.version,
            settings.prediction_column,
            config,
            settings.label_column,
            ids_in_rows,
        )

    # A CSV or Parquet file of plain columns goes to the monitor by column; any other, as
    # JSON (`monitord.columnar`).
    by_column = (
        ColumnarRows(
            data_file,
            config,
            topic=topic,
            ids_in_rows=ids_in_rows,
            render=event_values,
            **settings.columns(),
        )
        if eligible(data_file, config.events)
        else None
    )
    rows = (
        by_column.records(settings.batch_rows, progress)
        if by_column is not None
        else _records(
            data_file, topic, settings.model.encode(), event_values, settings.batch_rows, progress
        )
    )
    feeds = {TopicPartition(topic, 0): (rows, data_file.rows)}
    label_topic = None
    if labels_file is not None and labels_path is not None:
        label_topic = labels_path.name if labels_path.name != topic else f"{topic}.labels"
        feeds[TopicPartition(label_topic, 0)] = _label_feed(
            config, labels_file, label_topic, settings
        )
    return _Inputs(data_file, topic, labels_file, label_topic, by_column, feeds)


def _label_feed(
    config: Config, labels: DataFile, topic: str, settings: _Settings
) -> tuple[Iterator[Record], int]:
    """The labels file's rows as label records, at the events' record time: the label
    gate holds every label until the file's events are all read, so each prediction is
    in the join store before its label. (A record time of 0 is no label time: the label's
    is its timestamp column's.)"""

    def label_values(batch: Batch) -> list[bytes]:
        return labels_from_batch(batch, config, settings.label_column)

    return _records(labels, topic, None, label_values, settings.batch_rows), labels.rows


@dataclass(frozen=True)
class _Settings:
    """How the rows become events."""

    model: str
    version: str
    prediction_column: str | None
    label_column: str | None
    batch_rows: int

    def __post_init__(self) -> None:
        for flag, text in (("--model", self.model), ("--version", self.version)):
            try:
                text.encode()
            except UnicodeEncodeError:  # bytes the command line could not decode
                raise DataError(f"{flag}: {text!r} is not UTF-8 text") from None

    def columns(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "prediction_column": self.prediction_column,
            "label_column": self.label_column,
        }


def _replay_config(config: Config, inputs: _Inputs) -> Config:
    """``config`` for one file read as one partition: no repartitioning, the labels file's
    topic as the label topic, room for every prediction to wait for its label (which
    may come after the file's last event), and every calibration on the loop (a version
    calibrated by a worker detects when it is done: outputs in another order each run)."""
    labels = config.labels.model_copy(
        update={
            "topics": (inputs.label_topic,) if inputs.label_topic else (),
            "max_pending": max(config.labels.max_pending, inputs.data.rows),
        }
    )
    kafka = config.kafka.model_copy(update={"repartition": False})
    calibration = config.calibration.model_copy(update={"workers": 0})
    return config.model_copy(update={"labels": labels, "kafka": kafka, "calibration": calibration})


def _loader(config: Config, profile_path: Path | None) -> ProfileLoader:
    """Each version's profile: the one given when it is that version's, else the
    configured profile file, else the one given (or none: a warm-up)."""
    profile = load_profile(profile_path) if profile_path else None

    def load(model_name: str, model_version: str) -> ReferenceProfile | None:
        if profile is not None and (profile.model, profile.model_version) == (
            model_name,
            model_version,
        ):
            return profile
        path = config.profile_path(model_name, model_version)
        return load_profile(path) if path else profile

    return load


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
    output_format: Format = "jsonl",
    summary: IO[str] | None = None,
    progress: IO[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    report_path: Path | None = None,
) -> Daemon:
    """Replay ``data`` through the daemon loop, writing outputs to ``out`` (``jsonl``: as
    JSON lines; ``table``: as aligned text) and dead letters to ``dead_letters_path`` (one
    JSON object per bad row). Labels come from the rows' ``label_column`` (default
    ``events.label``) and from ``labels_path``. The file is read in batches: memory follows
    the windows and the reference, not the file. With ``summary``, what the replay came to is
    written there at the end; with ``progress``, a progress line (for a terminal).
    ``batch_rows``: rows read at a time. With ``report_path``, an HTML report of every
    window's tests, the alerts and the retrain requests (`monitord.report`) is written
    there (no distributions: the rows are not kept)."""
    started = time.monotonic()
    settings = _Settings(model, version, prediction_column, label_column, batch_rows)
    shown: Progress | None = None  # once the file's rows are counted

    def read(rows: int) -> None:
        if shown is not None:
            shown.update(rows)

    inputs = _inputs(config, data, labels_path, settings, read)
    shown = Progress(inputs.data.rows, progress) if progress is not None else None
    config = _replay_config(config, inputs)
    timed = inputs.data.has_column(config.events.timestamp)
    tally = ReplayTally(keep=report_path is not None, timed=timed)
    writer = _writer(out, output_format, inputs.topic, timed)
    dead_letters = _dead_letter_file(dead_letters_path, inputs)
    daemon = Daemon(
        config,
        FeedSource(inputs.feeds),
        dead_letters,
        [writer, tally],
        _loader(config, profile_path),
    )
    _fit(daemon, inputs, tally)
    _drain(daemon, dead_letters)
    if shown is not None:
        shown.done()
    if report_path is not None:
        _report(inputs, tally, report_path)
    _tell(daemon, inputs, dead_letters, dead_letters_path)
    if summary is not None:
        _summarize(summary, config, inputs, tally, time.monotonic() - started)
    return daemon


def _writer(out: IO[bytes], output_format: Format, topic: str, timed: bool) -> Publisher:
    """Outputs as aligned text for a person, or as JSON lines."""
    if output_format == "table":
        return TableWriter(out, topic, timed=timed)
    return JsonLinesPublisher(out, owned=False)


def _drain(daemon: Daemon, dead_letters: DeadLetterFile) -> None:
    try:
        daemon.drain()
    finally:
        dead_letters.close()


def _dead_letter_file(path: Path | None, inputs: _Inputs) -> DeadLetterFile:
    by_column = inputs.by_column
    try:
        return DeadLetterFile(path, {inputs.topic: by_column.event} if by_column else {})
    except OSError as exc:
        raise DataError(f"--dead-letters {path}: cannot write ({exc.strerror})") from None


def _fit(daemon: Daemon, inputs: _Inputs, tally: ReplayTally) -> None:
    """The daemon made a replay's: its decoder for rows read by column, a gate as large as
    the labels file, and a policy that tallies what it decides."""
    if inputs.by_column is not None:
        daemon.decode = inputs.by_column.decode
    if inputs.label_topic is not None:
        # Every label record is at time 0, so the gate releases none before the labels file
        # is read to its end: bounded below the file's labels, it turned the rest away and
        # read them again forever (a labels file of 250k rows never finished).
        daemon.joins.gate.max_bytes = sys.maxsize
    policy = TallyingPolicy.from_config(daemon.config)
    assert isinstance(policy, TallyingPolicy)
    policy.tally = tally
    daemon.policy = policy


def _report(inputs: _Inputs, tally: ReplayTally, path: Path) -> None:
    result = StreamResult(inputs.data.rows, tuple(tally.results), tuple(tally.outputs))
    try:
        render_report(result, path, title=f"monitord replay of {inputs.topic}")
    except OSError as exc:
        raise DataError(f"--report {path}: cannot write ({exc.strerror})") from None


def _tell(daemon: Daemon, inputs: _Inputs, dead_letters: DeadLetterFile, path: Path | None) -> None:
    """Dead letters and labels, on stderr."""
    where = f"written to {path}" if path else "see --dead-letters"
    for name, count, noun in (
        (inputs.topic, inputs.data.rows, "rows"),
        (inputs.label_topic, inputs.labels.rows if inputs.labels else 0, "label rows"),
    ):
        reasons = dead_letters.reasons.get(name or "")
        if reasons:
            listed = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
            print(
                f"monitord: {reasons.total()} of {count} {noun} dead-lettered ({listed}); {where}",
                file=sys.stderr,
            )
    if inputs.label_topic is not None or daemon.joins.counts:  # labels given, or inline
        for line in label_summary(daemon, inputs.data.rows):
            print(f"monitord: {line}", file=sys.stderr)


def _summarize(
    summary: IO[str], config: Config, inputs: _Inputs, tally: ReplayTally, elapsed: float
) -> None:
    rows = inputs.data.rows
    rate = f", {rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
    summary.write(f"monitord: {rows} rows in {elapsed:.1f} s{rate}\n")
    tested = tally.windows or tally.tests or tally.retrains
    for line in tally.lines(inputs.topic) if tested else []:
        summary.write(f"monitord: {line}\n")
    if not tally.windows:
        detection = config.detection
        summary.write(
            "monitord: no window was tested: without a profile a version's first "
            f"detection.warmup_events rows ({detection.warmup_events}) are its reference, "
            f"and a window takes detection.window_size rows ({detection.window_size})\n"
        )
    summary.flush()


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
    unscored, bad_inline = outcomes.pop("unscored", 0), outcomes.pop("bad_label", 0)
    line = f"labels joined to {joined} of {n_rows} rows"
    if outcomes:
        line += "; not joined: " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items()))
    lines = [line]
    if bad_inline:
        lines.append(f"{bad_inline} rows have a label that is an array or an object: no label")
    if unscored:
        lines.append(
            f"{unscored} joined rows left out of performance: their label or prediction is "
            "no class or number of their version's task (performance.task)"
        )
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


class DeadLetterFile:
    """The replay's dead-letter `Sink`: counts each file's bad rows by reason and, given a
    path, writes each as it comes, one JSON object per line: row, reason, detail and the
    event as text; ``file`` names the file the row is of (the data file, or the labels
    file). Nothing is held: a file of bad rows costs no memory."""

    def __init__(
        self, path: Path | None, events: Mapping[str, Callable[[int], bytes]] | None = None
    ) -> None:
        """``events``: per file read by column, its row's event by row (its records carry
        no value)."""
        self._path = path
        self._handle = path.open("wb") if path is not None else None
        self._events = dict(events or {})
        self.reasons: dict[str, Counter[str]] = {}  # per file

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        found = dict(headers)
        source = found[SOURCE_HEADERS[0]].decode(errors="replace")
        reason = found[ERROR_HEADERS[0]].decode()
        self.reasons.setdefault(source, Counter())[reason] += 1
        if self._handle is not None:
            row = int(found[SOURCE_HEADERS[2]])
            event = self._events.get(source)
            if event is not None and not value:
                value = event(row)
            line = {
                "file": source,
                "row": row,
                "reason": reason,
                "detail": found[ERROR_HEADERS[1]].decode(errors="replace"),
                "event": value.decode(errors="replace"),
            }
            with self._writing():
                self._handle.write(orjson.dumps(line) + b"\n")

    def flush(self, timeout_s: float) -> None:
        if self._handle is not None:
            with self._writing():
                self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with self._writing():
                handle.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that fails (a full disk) is the replay's error, naming the file."""
        try:
            yield
        except OSError as exc:
            raise DataError(f"--dead-letters {self._path}: cannot write ({exc.strerror})") from None


__all__ = [
    "DeadLetterFile",
    "Format",
    "event_id",
    "events_from_batch",
    "label_summary",
    "labels_from_batch",
    "replay",
]
