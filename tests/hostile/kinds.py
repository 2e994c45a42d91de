"""Kinds of hostile input for the broker suite: one table entry per kind.

A kind makes one Kafka record from a seeded generator and the model it may name, and says
what the daemon must do with it: dead-letter it with a reason (``reason``), or use it as a
valid event (``reason=None``; such records name only the `VICTIM` model, kept apart so the
other models' outputs can be compared with a run without the hostile records). A valid
kind with ``untimed=True`` carries an event time the daemon must not believe: it uses the
record's Kafka time and counts the event in ``monitord_untimed_events_total``.

A new kind (say, a refusal by a limit) is one more `Kind` in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

VICTIM = "victim"
"""The model that receives the valid hostile events (its own features: "x" and "c")."""
CATEGORIES = ("a", "b", "c", "d")
MAX_EVENT_BYTES = 1_000_000  # events.max_event_bytes, the default
MIB = 1 << 20

Headers = list[tuple[str, bytes]]
Made = tuple[bytes | None, bytes | None, Headers]
"""A record's key, value (None: a tombstone) and headers."""


@dataclass(frozen=True)
class Target:
    """The model a hostile record names, and the event time (seconds) it arrives at."""

    model: str
    time_s: int

    def event(self, rng: np.random.Generator, **fields: Any) -> dict[str, Any]:
        """A well-formed event of the model, with ``fields`` replacing or adding parts."""
        x = float(rng.normal())
        features: dict[str, Any] = {"x": x, "y": float(rng.normal()), "z": float(rng.normal())}
        if self.model == VICTIM:
            features = {"x": x, "c": str(rng.choice(CATEGORIES))}
        event: dict[str, Any] = {
            "model": self.model,
            "model_version": "1",
            "timestamp": self.time_s,
            "features": features,
            "prediction": x / 2,
        }
        return {**event, **fields}

    def features(self, rng: np.random.Generator, **values: Any) -> dict[str, Any]:
        """A well-formed event whose features have ``values`` replacing or adding columns."""
        event = self.event(rng)
        return {**event, "features": {**event["features"], **values}}


@dataclass(frozen=True)
class Kind:
    """One kind of hostile record.

    ``names``: which model the record names ("any": one of the compared models or the
    victim; "victim"; "none": no model, or one that does not matter). ``heavy``: the record
    is large, so fewer are made. ``truncated``: what the dead letter must say was cut.
    """

    name: str
    reason: str | None
    make: Callable[[np.random.Generator, Target], Made]
    names: Literal["any", "victim", "none"] = "any"
    heavy: bool = False
    untimed: bool = False
    truncated: str | None = None

    def __post_init__(self) -> None:
        assert self.reason is not None or self.names == "victim", f"{self.name}: valid events"
        assert not self.untimed or self.reason is None, f"{self.name}: untimed but bad"


def _json(event: Any) -> bytes:
    return orjson.dumps(event)


def _value(make: Callable[[np.random.Generator, Target], bytes]) -> Callable[..., Made]:
    """A kind that only shapes the value: no key, no headers."""
    return lambda rng, target: (None, make(rng, target), [])


def _padded(event: dict[str, Any], size: int) -> bytes:
    """``event`` with a top-level ``pad`` field making it exactly ``size`` bytes."""
    bare = _json({**event, "pad": ""})
    return _json({**event, "pad": "p" * (size - len(bare))})


def _text(rng: np.random.Generator, size: int) -> str:
    """``size`` lowercase letters (a repeated random block: cheap at a megabyte)."""
    block = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, 64))
    return (block * (size // 64 + 1))[:size]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def _raw(target: Target, rng: np.random.Generator, x: bytes, tail: bytes = b"") -> bytes:
    """An event written by hand (orjson cannot write these), with ``x`` as its "x" value."""
    event = target.event(rng)
    event["features"].pop("x")
    features = _json(event.pop("features"))
    head = _json(event)[:-1]
    return head + b',"features":{"x":' + x + b"," + features[1:-1] + tail + b"}}"


def _garbage_headers(rng: np.random.Generator, total: int, count: int) -> Headers:
    each = total // count
    return [(f"h{i}", _text(rng, each).encode()) for i in range(count)]


def _timestamped(stamp: Callable[[np.random.Generator, Target], Any]) -> Callable[..., Made]:
    return _value(lambda rng, t: _json(t.event(rng, timestamp=stamp(rng, t))))


KINDS: tuple[Kind, ...] = (
    # Not JSON, or not JSON the parser takes.
    Kind("tombstone", "empty", lambda rng, t: (t.model.encode(), None, []), "none"),
    Kind("empty value", "invalid_json", _value(lambda rng, t: b""), "none"),
    Kind("whitespace", "invalid_json", _value(lambda rng, t: b" \n\t "), "none"),
    Kind(
        "truncated JSON",
        "invalid_json",
        _value(lambda rng, t: (e := _json(t.event(rng)))[: int(rng.integers(1, len(e) - 1))]),
    ),
    Kind(
        "invalid UTF-8",
        "invalid_json",
        _value(lambda rng, t: _json(t.features(rng, c="@@")).replace(b"@@", b"\xff\xfe")),
    ),
    Kind(
        "lone surrogate",
        "invalid_json",
        _value(lambda rng, t: _json(t.features(rng, c="@@")).replace(b"@@", b"\\ud800")),
    ),
    Kind("NaN literal", "invalid_json", _value(lambda rng, t: _raw(t, rng, b"NaN"))),
    Kind("Infinity literal", "invalid_json", _value(lambda rng, t: _raw(t, rng, b"-Infinity"))),
    Kind("number beyond float", "invalid_json", _value(lambda rng, t: _raw(t, rng, b"1e400"))),
    Kind(
        "nested past the parser's depth",
        "invalid_json",
        _value(lambda rng, t: _raw(t, rng, _nested(2000))),
    ),
    Kind(
        "byte order mark",
        "invalid_json",
        _value(lambda rng, t: b"\xef\xbb\xbf" + _json(t.event(rng))),
    ),
    Kind(
        "trailing garbage",
        "invalid_json",
        _value(lambda rng, t: _json(t.event(rng)) + b"}{"),
    ),
    Kind(
        "random bytes",
        "invalid_json",
        _value(lambda rng, t: b"\xff" + rng.bytes(int(rng.integers(1, 200)))),
        "none",
    ),
    # JSON, but not an object.
    Kind("JSON null", "not_an_object", _value(lambda rng, t: b"null"), "none"),
    Kind(
        "array of events",
        "not_an_object",
        _value(lambda rng, t: _json([t.event(rng), t.event(rng)])),
    ),
    Kind(
        "event encoded twice",
        "not_an_object",
        _value(lambda rng, t: _json(_json(t.event(rng)).decode())),
    ),
    Kind("bare number", "not_an_object", _value(lambda rng, t: b"12.5"), "none"),
    # An object without a usable model.
    Kind(
        "no model",
        "missing_model",
        _value(lambda rng, t: _json({k: v for k, v in t.event(rng).items() if k != "model"})),
        "none",
    ),
    Kind("null model", "missing_model", _value(lambda rng, t: _json(t.event(rng, model=None)))),
    Kind("empty model name", "missing_model", _value(lambda rng, t: _json(t.event(rng, model="")))),
    Kind("model as number", "missing_model", _value(lambda rng, t: _json(t.event(rng, model=7)))),
    Kind(
        "model as object",
        "missing_model",
        _value(lambda rng, t: _json(t.event(rng, model={"name": t.model}))),
    ),
    Kind(
        "duplicate model key, the last empty",
        "missing_model",
        _value(lambda rng, t: _json(t.event(rng))[:-1] + b',"model":""}'),
    ),
    # A model, but no features object.
    Kind(
        "no features",
        "missing_features",
        _value(lambda rng, t: _json({k: v for k, v in t.event(rng).items() if k != "features"})),
    ),
    Kind(
        "null features",
        "missing_features",
        _value(lambda rng, t: _json(t.event(rng, features=None))),
    ),
    Kind(
        "features as array",
        "missing_features",
        _value(lambda rng, t: _json(t.event(rng, features=[1.0, 2.0, 3.0]))),
    ),
    Kind(
        "features as string",
        "missing_features",
        _value(lambda rng, t: _json(t.event(rng, features='{"x": 1.0}'))),
    ),
    Kind(
        "duplicate features key, the last a number",
        "missing_features",
        _value(lambda rng, t: _json(t.event(rng))[:-1] + b',"features":5}'),
    ),
    # Values breaking the rule of their column.
    Kind(
        "numeric string 12.5", "wrong_type", _value(lambda rng, t: _json(t.features(rng, x="12.5")))
    ),
    Kind(
        "special numeric strings",
        "wrong_type",
        _value(
            lambda rng, t: _json(t.features(rng, x=str(rng.choice(["inf", "-Infinity", "NaN"]))))
        ),
    ),
    Kind(
        "array in a number",
        "wrong_type",
        _value(lambda rng, t: _json(t.features(rng, x=[1.0, 2.0]))),
    ),
    Kind(
        "object in a number",
        "wrong_type",
        _value(lambda rng, t: _json(t.features(rng, x={"value": 1.0}))),
    ),
    Kind(
        "nested 500 deep in a number",
        "wrong_type",
        _value(lambda rng, t: _raw(t, rng, _nested(500))),
    ),
    Kind(
        "duplicate feature key, the last a string",
        "wrong_type",
        _value(lambda rng, t: _raw(t, rng, b"0.5", tail=b',"x":"0.5"')),
    ),
    Kind(
        "prediction as string",
        "wrong_type",
        _value(lambda rng, t: _json(t.event(rng, prediction="0.93"))),
    ),
    Kind(
        "prediction as array",
        "wrong_type",
        _value(lambda rng, t: _json(t.event(rng, prediction=[0.1, 0.9]))),
    ),
    Kind(
        "array in a category",
        "wrong_type",
        _value(lambda rng, t: _json(t.features(rng, c=["a", "b"]))),
        "victim",
    ),
    Kind(
        "object in a category",
        "wrong_type",
        _value(lambda rng, t: _json(t.features(rng, c={"a": 1}))),
        "victim",
    ),
    # Too large.
    Kind(
        "just over max_event_bytes",
        "oversize",
        _value(lambda rng, t: _padded(t.event(rng), MAX_EVENT_BYTES + 1)),
        heavy=True,
    ),
    Kind(
        "over 1 MiB",
        "oversize",
        _value(lambda rng, t: _padded(t.event(rng), MIB + int(rng.integers(1, 200_000)))),
        heavy=True,
        truncated="value",
    ),
    Kind(
        "oversize with a 64 KB key and 64 KB of headers",
        "oversize",
        lambda rng, t: (
            _text(rng, 64 * 1024).encode(),
            _padded(t.event(rng), MAX_EVENT_BYTES + 1),
            _garbage_headers(rng, 64 * 1024, 4),
        ),
        heavy=True,
        truncated="key,headers",
    ),
    Kind(
        "invalid JSON with a 100 KB key and 100 KB of headers",
        "invalid_json",
        lambda rng, t: (
            _text(rng, 100_000).encode(),
            _json(t.event(rng))[:-1],
            _garbage_headers(rng, 100_000, 50),
        ),
        heavy=True,
    ),
    # Valid events that are hostile anyway: the victim model's.
    Kind(
        "50 KB category",
        None,
        _value(lambda rng, t: _json(t.features(rng, c=_text(rng, 50_000)))),
        "victim",
    ),
    Kind(
        "900 KB category",
        None,
        _value(lambda rng, t: _json(t.features(rng, c=_text(rng, 900_000)))),
        "victim",
        heavy=True,
    ),
    Kind(
        "10,000 columns",
        None,
        _value(
            lambda rng, t: _json(
                t.features(rng, **{f"f{j:05d}": float(v) for j, v in enumerate(rng.random(10_000))})
            )
        ),
        "victim",
        heavy=True,
    ),
    Kind(
        "huge numbers",
        "wrong_type",
        _value(lambda rng, t: _json(t.features(rng, x=float(rng.choice([1.7e308, -1.7e308]))))),
    ),
    Kind(
        "large but legal numbers",
        None,
        _value(
            lambda rng, t: _json(t.features(rng, x=float(rng.choice([1e150, -1e150, 2.0**64]))))
        ),
        "victim",
    ),
    Kind(
        "boolean in a number", None, _value(lambda rng, t: _json(t.features(rng, x=True))), "victim"
    ),
    Kind(
        "number as a category", None, _value(lambda rng, t: _json(t.features(rng, c=7))), "victim"
    ),
    Kind(
        "nulls and absent features",
        None,
        _value(lambda rng, t: _json(t.event(rng, features={"x": None}, prediction=None))),
        "victim",
    ),
    Kind(
        "odd feature names",
        None,
        _value(lambda rng, t: _json(t.features(rng, **{"": 1.0, "ü\u0000": "v", "n" * 300: 2.0}))),
        "victim",
    ),
    Kind(
        "version as a number",
        None,
        _value(lambda rng, t: _json(t.event(rng, model_version=1))),
        "victim",
    ),
    Kind(
        "huge key and a thousand headers",
        None,
        lambda rng, t: (
            _text(rng, 200_000).encode(),
            _json(t.event(rng)),
            _garbage_headers(rng, 100_000, 1000),
        ),
        "victim",
        heavy=True,
    ),
    Kind("epoch microseconds", None, _timestamped(lambda rng, t: t.time_s * 10**6), "victim"),
    Kind("epoch nanoseconds", None, _timestamped(lambda rng, t: t.time_s * 10**9), "victim"),
    Kind("timestamp 1e300", None, _timestamped(lambda rng, t: 1e300), "victim", untimed=True),
    Kind(
        "timestamp that does not parse",
        None,
        _timestamped(lambda rng, t: str(rng.choice(["yesterday", "2026-13-45T99:00", ""]))),
        "victim",
        untimed=True,
    ),
    Kind(
        "timestamp days ahead",
        None,
        _timestamped(lambda rng, t: (t.time_s + 10 * 86_400) * 1000),
        "victim",
        untimed=True,
    ),
    Kind(
        "timestamp outside the calendar",
        None,
        _timestamped(lambda rng, t: [-1, "10000-01-01T00:00:00", 2**63 - 1][int(rng.integers(3))]),
        "victim",
        untimed=True,
    ),
    Kind(
        "timestamp of the wrong type",
        None,
        _timestamped(lambda rng, t: [True, {"s": t.time_s}, [t.time_s]][int(rng.integers(3))]),
        "victim",
        untimed=True,
    ),
)
"""Every kind; names are unique."""
