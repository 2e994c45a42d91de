"""The environment's part of the configuration: ``MONITORD_*`` variables set config keys.

``MONITORD_<KEY>`` sets a top-level key and ``__`` (two underscores) separates nested keys:
``MONITORD_STATE_DIR``, ``MONITORD_KAFKA__BOOTSTRAP_SERVERS``,
``MONITORD_KAFKA__CONSUMER__MAX_POLL_RECORDS``. An entry of an array of tables is named by
its 0-based index in the file: ``MONITORD_MODELS__0__RETRAIN_SCHEDULE``; a variable cannot
add an entry, but may give the whole array (``MONITORD_RECEIVERS='[{...}]'``). Keys are
matched case-insensitively: a variable sets the key the file spells in any case
(``MONITORD_MODELS__0__PROFILES__V7`` replaces the file's version ``V7``); a key the file
does not have is added in lower case, so give a table with mixed-case keys whole.

A value is read as a TOML value (``5000``, ``true``, ``["a", "b"]``, ``{ team = "ml" }``)
where the key takes something other than text; text keys (names, URLs, topics, paths)
take it verbatim. Variables are applied in name order, so ``MONITORD_KAFKA__GROUP_ID`` wins
over a ``group_id`` in a ``MONITORD_KAFKA`` table.

Every other ``MONITORD_*`` variable must be one monitord knows, or it is refused at startup
(a typo would otherwise be a setting silently not applied): ``MONITORD_CONFIG`` (the
config file), the secrets of `monitord.config.SECRET_ENV`, and any variable a ``*_env`` key
of the configuration names (a receiver's secret).
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

PREFIX = "MONITORD_"
SEPARATOR = "__"
CONFIG_FILE = "MONITORD_CONFIG"
NOT_SETTINGS = frozenset({CONFIG_FILE, "MONITORD_ORCHESTRATORS_DIR"})
"""Variables of monitord that are not config keys: the config file, and where `make test`
installs the orchestrators the tests run."""


@dataclass(frozen=True)
class Override:
    """One ``MONITORD_*`` variable as a config key path and its text."""

    variable: str
    keys: tuple[str, ...]  # lower case; an array entry's index as digits
    text: str

    @property
    def path(self) -> str:
        """The key path as messages spell it: ``kafka.consumer.max_poll_records``."""
        return ".".join(self.keys)


def overrides(environ: Mapping[str, str], known: Collection[str]) -> list[Override]:
    """The ``MONITORD_*`` variables of ``environ`` that set config keys, in name order;
    those in ``known`` (secrets, the config file) are not keys."""
    found = []
    for variable in sorted(environ):
        if not variable.startswith(PREFIX) or variable in known or variable in NOT_SETTINGS:
            continue
        keys = tuple(variable[len(PREFIX) :].lower().split(SEPARATOR))
        found.append(Override(variable, keys, environ[variable]))
    return found


def parse_value(text: str, *, as_text: bool) -> object:
    """A variable's value: verbatim for a text key, else as TOML when it is valid TOML
    (validation then says what the key needs when it is not)."""
    if as_text:
        return text
    try:
        # ValueError too: an integer of more than 4,300 digits is refused by int() itself.
        document = tomllib.loads(f"value = {text}")
    except ValueError:
        return text
    # "1\nfoo = 2" parses as two keys: the second would be dropped without a word, so the
    # text is not one TOML value, and validation says what the key needs.
    return document["value"] if document.keys() == {"value"} else text


def apply(data: dict[str, object], override: Override, value: object) -> str | None:
    """Set ``override``'s key in the parsed config ``data`` to ``value`` (tables on the way
    are created); the problem, naming the variable, if the path cannot be followed."""
    node: object = data
    *parents, last = override.keys
    if any(not key or key.startswith("_") or key.endswith("_") for key in override.keys):
        return (
            f"{override.variable}: an empty key; separate nested keys with exactly two "
            f"underscores, e.g. {PREFIX}KAFKA{SEPARATOR}GROUP_ID"
        )
    for depth, key in enumerate(parents):
        where = ".".join(override.keys[:depth]) or "the top level"
        if isinstance(node, list):
            if not key.isdecimal() or int(key) >= len(node):
                return _no_entry(override, where, key, len(node))
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.setdefault(_key_in(node, key), {})
        else:
            return f"{override.variable}: {where} is a value, not a table with key {key!r}"
    if isinstance(node, list):
        if not last.isdecimal() or int(last) >= len(node):
            return _no_entry(override, ".".join(parents), last, len(node))
        node[int(last)] = value
    elif isinstance(node, dict):
        node[_key_in(node, last)] = value
    else:
        return f"{override.variable}: {'.'.join(parents)} is a value, not a table"
    return None


def _key_in(table: dict[object, object], key: str) -> str:
    """The key of ``table`` that ``key`` (lower case) names: the file's spelling when it has
    one, so ``..._PROFILES__V1`` overrides a version ``V1`` instead of adding ``v1``."""
    spelled = [k for k in table if isinstance(k, str) and k.lower() == key]
    return spelled[0] if len(spelled) == 1 else key


def _no_entry(override: Override, where: str, key: str, length: int) -> str:
    return (
        f"{override.variable}: {where} has {length} entr{'y' if length == 1 else 'ies'} in "
        f"the config file, so {key!r} names none; a variable changes an entry by its "
        f"0-based index ({PREFIX}{where.upper()}{SEPARATOR}0{SEPARATOR}KEY) or gives the "
        "whole array"
    )


__all__ = [
    "CONFIG_FILE",
    "NOT_SETTINGS",
    "PREFIX",
    "SEPARATOR",
    "Override",
    "apply",
    "overrides",
    "parse_value",
]
