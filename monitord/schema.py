"""Where a key lives in the settings models: what a value at a key path may be, whether it
is text or a file path, and relative file paths made absolute.

The config file and the environment are plain data until they are validated;
`monitord.config` asks this module about that data before validation: which values to
read as text, and which are paths; and after validation, relative paths made absolute
against the config file's directory.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Annotated, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, SecretStr

_T = TypeVar("_T")


def annotations_at(root: type[BaseModel], keys: Sequence[str]) -> list[object]:
    """The types a value at ``keys`` may have (several where a union, such as the receiver
    types, has the key in several members); empty for a key no model has."""
    found: list[object] = [root]
    for key in keys:
        found = [inner for annotation in found for inner in _children(annotation, key)]
    return found


def is_text(annotations: Sequence[object]) -> bool:
    """Every type at the key is text (a string, a path, a secret, a choice of strings)."""
    members = [m for a in annotations for m in _members(a) if m is not type(None)]
    return bool(members) and all(_textual(member) for member in members)


def resolve_paths(data: object, annotations: Sequence[object], base: Path) -> object:
    """``data`` with every relative file path (a string where the settings expect a path)
    made absolute against ``base``; the rest unchanged."""
    if isinstance(data, str):
        if _is_path(annotations) and not Path(data).is_absolute():
            return str(base / data)
        return data
    if isinstance(data, dict):
        return {
            key: resolve_paths(value, _children_of(annotations, str(key)), base)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            resolve_paths(value, _children_of(annotations, str(i)), base)
            for i, value in enumerate(data)
        ]
    return data


def with_base(value: _T, base: Path) -> _T:
    """Validated settings ``value`` with every relative path in it (defaults included)
    made absolute against ``base``."""
    if isinstance(value, PurePath):
        return value if value.is_absolute() else cast(_T, base / value)
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            current = getattr(value, name)
            updated = with_base(current, base)
            if updated is not current:
                changed[name] = updated
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, tuple):
        items = tuple(with_base(item, base) for item in value)
        return value if items == value else cast(_T, items)
    if isinstance(value, dict):
        entries = {key: with_base(item, base) for key, item in value.items()}
        return value if entries == value else cast(_T, entries)
    return value


def _children_of(annotations: Sequence[object], key: str) -> list[object]:
    return [inner for annotation in annotations for inner in _children(annotation, key)]


def _children(annotation: object, key: str) -> list[object]:
    """The types of ``key`` inside a value of type ``annotation``: a model's field, a
    sequence's element (``key`` an index), a mapping's value."""
    found: list[object] = []
    for member in _members(annotation):
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(key)
            if field is not None:
                found.append(field.annotation)
        elif origin in (tuple, list) and key.isdecimal():
            found.append(get_args(member)[0])
        elif origin is dict:
            found.append(get_args(member)[1])
    return found


def _members(annotation: object) -> list[object]:
    """``annotation`` without ``Annotated``, a union as its members."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _textual(member: object) -> bool:
    if get_origin(member) is Literal:
        return all(isinstance(choice, str) for choice in get_args(member))
    return isinstance(member, type) and issubclass(member, (str, PurePath, SecretStr))


def _is_path(annotations: Sequence[object]) -> bool:
    return any(
        isinstance(member, type) and issubclass(member, PurePath)
        for annotation in annotations
        for member in _members(annotation)
    )


__all__ = ["annotations_at", "is_text", "resolve_paths", "with_base"]
