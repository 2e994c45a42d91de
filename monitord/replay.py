"""`monitord replay`: the daemon's own decode -> monitor -> policy path over a file.

Each input row becomes the inference event a producer would have sent, at offset = row
index of a one-partition in-memory topic, so an output's ``row`` is the input row whose
arrival made it fire. Bad rows are reported on stderr, never silently dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import orjson

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from detectors.profile import ReferenceProfile
from monitord.config import Config
from monitord.daemon import Daemon
from monitord.outputs import JsonLinesPublisher
from monitord.reference import load_profile
from monitord.tabular import Row, read_rows


def events_from_rows(
    rows: list[Row], model: str, version: str, prediction_column: str | None, config: Config
) -> list[bytes]:
    """Inference-event JSON for each row (model and version from the row when present)."""
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
) -> Daemon:
    """Replay ``data`` through the daemon loop, writing outputs to ``out`` as JSON lines."""
    rows = read_rows(data, config.events)
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
    for message in dead_letters.messages():
        reason = dict(message.headers).get("monitord.error.reason", b"?").decode()
        offset = dict(message.headers).get("monitord.source.offset", b"?").decode()
        print(f"monitord: row {offset} skipped: {reason}", file=sys.stderr)
    return daemon
