"""Peak memory of `monitord replay` against the size of the file it reads.

Generates files of ``rows x 20`` features (Gaussian, feature 3 shifted in the second half,
a prediction column) as CSV and, with pyarrow, Parquet; replays each in a fresh child
process (warm-up reference, JSON lines to /dev/null) and reads the child's peak RSS. The
ratio of the largest file's peak to the smallest's shows whether memory follows the file.

    python benchmarks/replay_memory.py                     # 200k and 1M rows, CSV
    python benchmarks/replay_memory.py --rows 100000 --format parquet

Last line: ``RESULT peak_rss_mb_<rows>=<x> ... rss_growth=<largest / smallest>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 20
CHILD = """
import resource, sys
from monitord.cli import main
code = main(["replay", sys.argv[1], "--model", "m"])  # piped: JSON lines
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of `FEATURES` Gaussian features (feature 3 shifted by 1 in the second
    half) and a prediction, as CSV or Parquet by ``path``'s suffix."""
    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(FEATURES)] + ["prediction"]
    chunk = 100_000
    writer = None
    with path.open("w") as handle:
        if path.suffix == ".csv":
            handle.write(",".join(names) + "\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            values = rng.normal(size=(n, FEATURES + 1)).round(5)
            values[np.arange(start, start + n) >= rows // 2, 3] += 1.0
            if path.suffix == ".csv":
                np.savetxt(handle, values, delimiter=",", fmt="%.5f")
                continue
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.parquet as pq  # noqa: PLC0415

            table = pa.table({name: values[:, j] for j, name in enumerate(names)})
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table)
    if writer is not None:
        writer.close()


def measure(path: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, outputs) of one replay of ``path`` in a child process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay of {path} failed ({done.returncode}):\n{done.stderr}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return peak_kb / 1024.0, elapsed, len(done.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sorted(args.rows):
            path = Path(tmp) / f"traffic_{rows}.{args.format}"
            generate(path, rows)
            peak_mb, seconds, outputs = measure(path)
            path.unlink()
            peaks[rows] = peak_mb
            print(
                f"{rows:>9} rows x {FEATURES} ({args.format}): peak RSS {peak_mb:7.0f} MB, "
                f"{seconds:6.1f} s ({rows / seconds:,.0f} rows/s), {outputs} outputs"
            )
    smallest, largest = min(peaks), max(peaks)
    growth = peaks[largest] / peaks[smallest]
    fields = " ".join(f"peak_rss_mb_{rows}={peak:.0f}" for rows, peak in sorted(peaks.items()))
    print(f"RESULT {fields} rss_growth={growth:.2f}")


if __name__ == "__main__":
    main()
