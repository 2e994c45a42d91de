"""Typed checkpoint state: the models every piece of a version's state is stored as.

A checkpoint (`monitord.checkpoint`) carries, per model version, two JSON *documents*
beside its arrays: the monitor's (`monitord.monitor.MonitorState`) and the policy's
(`monitord.policy.PolicyState`). Each owner of a piece of state (row log, recent regime,
alert book, retrain episodes, schedule) defines the model of its piece next to its code;
the documents nest them. A document carries a format version that covers everything
nested in it.

Loading validates: stored state may come from an untrusted place, so `StateModel.load`
either returns a fully typed model or raises `StateError` naming the field and what is
wrong, before any of the state is used. Models are frozen; their stored form is plain
JSON (no pickle) whose keys are the field names (an alert row, a NamedTuple, is stored as
a list).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

MAX_PROBLEMS = 3
"""Validation problems an error names (a corrupt document may have hundreds)."""


class StateError(ValueError):
    """Stored state that does not validate; the message names the field and the problem."""


class StateModel(BaseModel):
    """A frozen, validated piece of stored state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def load(cls, data: object, source: str) -> Self:
        """Validate stored (JSON) ``data``; ``source`` names it in a `StateError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise StateError(f"{source}: {_problems(exc)}") from None


class Document(StateModel):
    """A piece of state stored as a whole: its ``format_version`` covers every model nested
    in it. To change the layout, raise `FORMAT` and the field's default (what new documents
    are written with), and convert older formats in a ``mode="before"`` validator, so
    stored checkpoints still load."""

    FORMAT: ClassVar[int] = 1
    # Absent in checkpoints written before documents carried a version: those are format 1.
    format_version: int = 1

    @field_validator("format_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version != cls.FORMAT:
            raise ValueError(
                f"format {version}; this monitord reads format {cls.FORMAT} (a newer "
                "monitord wrote it?)"
            )
        return version

    def dump(self) -> dict[str, Any]:
        """The stored form: JSON-able (a NaN stays a float, which `json` writes as NaN)."""
        return self.model_dump()


def _problems(exc: ValidationError) -> str:
    """The first problems of a validation error, each as ``path: what is wrong``."""
    errors = exc.errors(include_url=False)
    shown = []
    for error in errors[:MAX_PROBLEMS]:
        got = "" if error["type"] == "missing" else f" (got {_short(error['input'])})"
        message = error["msg"].removeprefix("Value error, ")  # a validator's own words
        path = _path(error["loc"])
        shown.append(f"{path}: {message}{got}" if path else f"{message}{got}")
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _path(loc: tuple[int | str, ...]) -> str:
    """``("retrain", "latest", "offsets", 0, "topic")`` -> ``retrain.latest.offsets[0].topic``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["Document", "StateError", "StateModel"]
