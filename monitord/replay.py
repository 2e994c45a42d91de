"""`monitord replay`: the daemon's own decode -> monitor -> policy path over a file.

Each input row becomes the inference event a producer would have sent, at offset = row
index of a one-partition in-memory topic, so an output's ``row`` is the input row whose
arrival made it fire. A bad row (a JSONL line that is no JSON object, a string in a numeric
column...) is dead-lettered as the daemon would: counted by reason on stderr, written with
its reason to ``--dead-letters`` when given, and the run goes on.
"""

from __future__ import annotations

import sys
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
) -> list[bytes]:
    """Inference-event JSON for each row (model and version from the row when present); a
    bad line's own bytes, for the daemon to dead-letter."""
    fields = config.events
    reserved = {
        fields.model,
        fields.model_version,
        fields.timestamp,
        fields.event_id,
        fields.label,
        prediction_column,
    }
    events = []
    for row in rows:
        if isinstance(row, BadLine):
            events.append(row.raw)
            continue
        event = {
            fields.model: row.get(fields.model, model),
            fields.model_version: str(row.get(fields.model_version, version)),
            fields.features: {k: v for k, v in row.items() if k not in reserved},
        }
        if prediction_column and prediction_column in row:
            event[fields.prediction] = row[prediction_column]
        if fields.timestamp in row:
            event[fields.timestamp] = row[fields.timestamp]
        events.append(orjson.dumps(event))
    return events


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
) -> Daemon:
    """Replay ``data`` through the daemon loop, writing outputs to ``out`` as JSON lines
    and dead letters to ``dead_letters_path`` (one JSON object per bad row)."""
    rows = read_rows_keeping_bad_lines(data, config.events)
    profile = load_profile(profile_path) if profile_path else None
    values = events_from_rows(rows, model, version, prediction_column, config)
    topic = data.name
    records = [Record(topic, 0, i, model.encode(), v, 0) for i, v in enumerate(values)]

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
    if letters:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(daemon.stats.bad_records.items()))
        where = f"written to {dead_letters_path}" if dead_letters_path else "see --dead-letters"
        print(
            f"monitord: {len(letters)} of {len(rows)} rows dead-lettered ({reasons}); {where}",
            file=sys.stderr,
        )
    return daemon


def write_dead_letters(letters: Sequence[Message], path: Path) -> None:
    """One JSON object per dead letter: row, reason, detail and the event as text."""
    with path.open("wb") as handle:
        for letter in letters:
            headers = dict(letter.headers)
            line = {
                "row": int(headers[SOURCE_HEADERS[2]]),
                "reason": headers[ERROR_HEADERS[0]].decode(),
                "detail": headers[ERROR_HEADERS[1]].decode(errors="replace"),
                "event": letter.value.decode(errors="replace"),
            }
            handle.write(orjson.dumps(line) + b"\n")


__all__ = ["events_from_rows", "replay", "write_dead_letters"]
