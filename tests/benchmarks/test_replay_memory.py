"""`benchmarks/replay_memory.py` on small files runs end to end and ends with its RESULT
line; the replay it measures finds the shift it generates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replay_memory.py"
RESULT = re.compile(
    r"RESULT peak_rss_mb_3000=(?P<small>\d+) peak_rss_mb_6000=(?P<large>\d+) "
    r"rss_growth=(?P<growth>[\d.]+)"
)


@pytest.mark.slow
def test_small_run_ends_with_the_result_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "3000", "6000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    *sizes, last = done.stdout.strip().splitlines()
    found = RESULT.fullmatch(last)
    assert found is not None, last
    assert int(found["small"]) > 0
    assert float(found["growth"]) == pytest.approx(int(found["large"]) / int(found["small"]), 0.01)
    # Feature 3 shifts at the middle row: each replay reports outputs (alerts).
    assert all(not line.endswith(" 0 outputs") for line in sizes), sizes
