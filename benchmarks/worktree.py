"""Run a benchmark script against another commit's code, for a before/after in one run.

The commit is checked out in a temporary git worktree and the script (this checkout's, so
both sides measure the same thing) runs in a subprocess with that tree first on
PYTHONPATH; its standard output comes back. The tree's numba kernels compile there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def checked_out(rev: str, script: Path) -> Iterator[Path]:
    """A temporary worktree of ``rev`` (of the repository ``script`` is in), removed after."""
    root = Path(
        subprocess.run(
            ["git", "-C", str(script.parent), "rev-parse", "--show-toplevel"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def run_in(tree: Path, script: Path, arguments: list[str]) -> str:
    """``python script *arguments`` with ``tree`` first on PYTHONPATH; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(script), *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def run_at(rev: str, script: Path, arguments: list[str]) -> str:
    """``python script *arguments`` on the code of ``rev``; its standard output."""
    with checked_out(rev, script) as tree:
        return run_in(tree, script, arguments)
