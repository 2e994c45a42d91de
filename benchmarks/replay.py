"""Replay throughput and peak memory against the size of the file it reads, next to
reading the same file with pyarrow alone (the floor).

Generates files of ``rows x 20`` features (Gaussian, feature 3 shifted in the second half,
a prediction column) as CSV and Parquet; replays each in a fresh child process (`monitord
replay FILE --model m`, warm-up reference, JSON lines to /dev/null) and, in another fresh
child, reads it with pyarrow alone (Parquet batches, or the CSV reader, each column to
numpy). A child's time is that of the work, after the interpreter started; its peak RSS is
its own. Sizes run smallest first, each format's replay next to its read.

    python benchmarks/replay.py --quick      # 100k, 300k and 1M rows, CSV and Parquet
    python benchmarks/replay.py              # and 3M rows
    python benchmarks/replay.py --rows 3000 6000 --format parquet

Last line, from the Parquet runs (the largest file and the smallest with ``--rows``):
``RESULT rows_per_s=<x> vs_read_floor=<x> peak_rss_mb_1m=<x> rss_growth_1m_vs_100k=<x>``,
where the memory figures take the worse of the two formats.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = 20
REPLAY = """
import resource, sys, time
from monitord.cli import main
started = time.perf_counter()
code = main(["replay", sys.argv[1], "--model", "m"])  # piped: JSON lines
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      file=sys.stderr)
sys.exit(code)
"""
READ = """
import resource, sys, time
import pyarrow.csv as pv, pyarrow.parquet as pq
started = time.perf_counter()
path = sys.argv[1]
if path.endswith(".csv"):
    batches = pv.open_csv(path)
else:
    batches = pq.ParquetFile(path, pre_buffer=False).iter_batches(8192, use_threads=False)
rows = 0
for batch in batches:
    rows += batch.num_rows
    for column in batch.columns:
        column.to_numpy(zero_copy_only=False)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      file=sys.stderr)
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


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mb: float
    outputs: int


def measure(script: str, path: Path) -> Run:
    """One fresh child's time, peak RSS and lines written for ``path``."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{path}: child failed ({done.returncode}):\n{done.stderr}")
    seconds, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return Run(float(seconds), int(peak_kb) / 1024.0, len(done.stdout.splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k, 300k and 1M rows")
    parser.add_argument("--rows", type=int, nargs="+", help="sizes instead of the defaults")
    parser.add_argument("--format", choices=("csv", "parquet"), nargs="+")
    args = parser.parse_args()
    sizes = sorted(args.rows or [100_000, 300_000, 1_000_000, *([] if args.quick else [3_000_000])])
    formats = args.format or ["csv", "parquet"]
    replays: dict[tuple[str, int], Run] = {}
    reads: dict[tuple[str, int], Run] = {}
    print(
        f"{'rows':>9} {'format':>8} {'replay s':>9} {'rows/s':>10} {'peak MB':>8} "
        f"{'read s':>7} {'read rows/s':>12} {'ratio':>6} outputs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            for kind in formats:
                path = Path(tmp) / f"traffic_{rows}.{kind}"
                generate(path, rows)
                replays[kind, rows] = run = measure(REPLAY, path)
                reads[kind, rows] = read = measure(READ, path)
                path.unlink()
                print(
                    f"{rows:>9} {kind:>8} {run.seconds:>9.2f} {rows / run.seconds:>10,.0f} "
                    f"{run.peak_mb:>8.0f} {read.seconds:>7.2f} {rows / read.seconds:>12,.0f} "
                    f"{read.seconds / run.seconds:>6.3f} {run.outputs}",
                    flush=True,
                )
    headline = "parquet" if "parquet" in formats else formats[0]
    largest, smallest = sizes[-1], sizes[0]
    run, read = replays[headline, largest], reads[headline, largest]
    peak = max(replays[kind, largest].peak_mb for kind in formats)
    growth = max(
        replays[kind, largest].peak_mb / replays[kind, smallest].peak_mb for kind in formats
    )
    rate, floor = largest / run.seconds, read.seconds / run.seconds
    print(
        f"RESULT rows_per_s={rate:.0f} vs_read_floor={floor:.3f} "
        f"peak_rss_mb_1m={peak:.0f} rss_growth_1m_vs_100k={growth:.2f}"
    )


if __name__ == "__main__":
    main()
