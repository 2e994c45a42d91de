"""`benchmarks/performance.py --smoke` runs end to end and ends with its RESULT line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "performance.py"
RESULT = re.compile(
    r"RESULT detected=(?P<detected>[\d.]+) median_delay_rows=(?P<delay>\d+) "
    r"river_adwin_delay_rows=(?P<river>\d+) false_alarms_per_M=(?P<false>[\d.]+) "
    r"join_events_per_s=(?P<rate>\d+)"
)


@pytest.mark.slow
def test_smoke_run_ends_with_the_result_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    last = done.stdout.strip().splitlines()[-1]
    found = RESULT.fullmatch(last)
    assert found is not None, last
    # Nine changes that at least double or halve the error rate, labels delayed up to
    # 2,000 rows. Each is seen, but with one seed per stream a false alarm in the stretch
    # before a change makes the benchmark count that change as not detected, as
    # benchmarks/power.py does: rare at the budgeted level, it happens to the regression
    # stream of this seed, whose 1,000-row reference set its 90th percentile 2.5 standard
    # errors low (a draw of about one in a hundred). At most one such is allowed.
    assert float(found["detected"]) >= 8 / 9 - 0.005
    assert int(found["rate"]) > 0
