"""`benchmarks/replay.py` on small files runs end to end and ends with its RESULT line;
the replay it measures finds the shift it generates, in both formats."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replay.py"
RESULT = re.compile(
    r"RESULT rows_per_s=(?P<rate>\d+) vs_read_floor=(?P<floor>[\d.]+) "
    r"peak_rss_mb_1m=(?P<peak>\d+) rss_growth_1m_vs_100k=(?P<growth>[\d.]+)"
)


@pytest.mark.slow
def test_small_run_ends_with_the_result_line() -> None:
    pytest.importorskip("pyarrow")  # the optional [parquet] extra; CI installs it
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "3000", "6000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    _header, *sizes, last = done.stdout.strip().splitlines()
    found = RESULT.fullmatch(last)
    assert found is not None, last
    assert int(found["rate"]) > 0
    assert int(found["peak"]) > 0
    assert float(found["growth"]) > 0
    assert [line.split()[:2] for line in sizes] == [
        ["3000", "csv"],
        ["3000", "parquet"],
        ["6000", "csv"],
        ["6000", "parquet"],
    ]
    # Feature 3 shifts at the middle row: each replay reports outputs (alerts).
    assert all(int(line.split()[-1]) > 0 for line in sizes), sizes
