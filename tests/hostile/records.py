"""Hostile Kafka records for the decode path: Hypothesis strategies, and the corpus of
records that once broke it (tests/hostile/corpus, one JSON record per line).

A corpus line holds the record's parts in JSON: ``value`` and ``key`` as text (or
``value_hex``/``key_hex`` for bytes that are not UTF-8, null for none), ``timestamp_ms`` and
``headers`` as ``[[name, text], ...]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from connectors.stream import Record

CORPUS = Path(__file__).parent / "corpus"
MODELS = ["fraud", "pricing", "churn"]
FEATURES = ["amount", "country", "age", "@prediction", "x" * 300, ""]


def corpus_batches() -> dict[str, list[Record]]:
    """Each corpus file as one batch of records, by file name."""
    batches = {}
    for path in sorted(CORPUS.glob("*.jsonl")):
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        batches[path.stem] = [_record(i, line) for i, line in enumerate(lines)]
    return batches


def _record(offset: int, line: dict[str, Any]) -> Record:
    def part(name: str) -> bytes | None:
        if f"{name}_hex" in line:
            return bytes.fromhex(line[f"{name}_hex"])
        text = line.get(name)
        if text is None:
            return None
        return text.encode() if isinstance(text, str) else orjson.dumps(text)

    headers = tuple((name, value.encode()) for name, value in line.get("headers", []))
    return Record("in", 0, offset, part("key"), part("value"), line.get("timestamp_ms", 0), headers)


# JSON values of every kind, numbers at the edges of float and int64 included.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 1e308, -1e308, 5e-324, 2**53 + 1]),
    st.text(max_size=40),
    st.sampled_from(["12.5", "inf", "NaN", "-Infinity", "", "null", "true"]),
    st.integers(min_value=300, max_value=2000).map(lambda n: "v" * n),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            1_795_435_200,
            1_795_435_200_123,
            1_795_435_200_123_456,
            1_795_435_200_123_456_789,
            1e300,
            "2026-11-23T12:00:00Z",
            "9999-12-31T23:59:59-05:00",
            "10000-01-01T00:00:00",
            "0001-01-01T00:00:00+14:00",
            "yesterday",
        ]
    ),
    json_values,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An inference event, usually well-formed in shape, with values of any kind."""
    names = draw(st.lists(st.sampled_from(FEATURES), max_size=5, unique=True))
    typed = draw(st.booleans())
    features: Any = {
        name: draw(st.floats(-1e6, 1e6) if typed and name != "country" else json_values)
        for name in names
    }
    event: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS) | json_scalars),
        "features": draw(st.just(features) | json_values) if draw(st.booleans()) else features,
    }
    for field, values in (
        ("model_version", st.sampled_from(["1", "2"]) | json_scalars),
        ("prediction", json_values),
        ("timestamp", timestamps),
    ):
        if draw(st.booleans()):
            event[field] = draw(values)
    return event


def _encode(event: dict[str, Any]) -> bytes:
    # orjson refuses integers beyond 64 bits: such events are written as Python would.
    try:
        return orjson.dumps(event)
    except TypeError:
        return repr(event).encode()


record_values = st.one_of(
    events().map(_encode),
    # The same, cut short or with bytes spliced in: what a broken producer sends.
    st.tuples(events().map(_encode), st.integers(0, 200)).map(lambda t: t[0][: t[1]]),
    st.tuples(events().map(_encode), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][: len(t[0]) // 2] + t[1] + t[0][len(t[0]) // 2 :]
    ),
    st.binary(max_size=64),
    st.none(),
)


@st.composite
def records(draw: st.DrawFn, offset: int = 0) -> Record:
    return Record(
        "in",
        0,
        offset,
        draw(st.none() | st.binary(max_size=16)),
        draw(record_values),
        draw(st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.just(1_795_435_200_000)),
        tuple(draw(st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3))),
    )


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(min_value=1, max_value=12))
    return [draw(records(offset)) for offset in range(count)]


def _steady(offset: int, value: float) -> Record:
    event = {
        "model": "fraud",
        "model_version": "1",
        "features": {"amount": value, "country": "DE" if value > 0 else "FR"},
        "prediction": value / 2,
    }
    return Record("in", 0, offset, None, orjson.dumps(event), 1_795_435_200_000 + offset)


@st.composite
def steady_streams(draw: st.DrawFn) -> list[list[Record]]:
    """Batches of one model's well-formed events, enough to end a short warm-up and fill
    windows, with hostile records among them."""
    stream, offset = [], 0
    for _ in range(draw(st.integers(min_value=3, max_value=8))):
        batch = []
        for _ in range(draw(st.integers(min_value=10, max_value=40))):
            if draw(st.integers(0, 9)) == 0:
                batch.append(draw(records(offset)))
            else:
                batch.append(_steady(offset, draw(st.floats(-3, 3))))
            offset += 1
        stream.append(batch)
    return stream
