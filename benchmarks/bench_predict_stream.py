"""Benchmark: `nace-app predict` of one description, then `--input` on a large CSV: wall time, CPU time, peak RSS.

Usage: uv run python benchmarks/bench_predict_stream.py [--rows 200000] [--formats parquet,jsonl] [--top-k 5]
       [--one "plumber"]

It writes a CSV of `--rows` rows (columns id, label) from the embedded demo data's texts, repeated and shuffled
with a fixed seed, then runs `uv run nace-app predict --input rows.csv --output out.<format>` with the embedded
model, each as a whole process measured with `os.wait4` (wall time; peak RSS of the process and the children it
waited for, so `uv`'s Python child is counted). The last stderr line (the progress report) and the output's size
are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` demo texts, repeated and shuffled, with an id column before them."""
    import polars as pl

    from nace_app.data.tables import load_labelled
    from nace_app.sources.resolve import embedded_data_dir

    texts = load_labelled(embedded_data_dir())["label"]
    repeated = pl.concat([texts] * (rows // texts.len() + 1))[:rows].shuffle(seed=seed)
    pl.DataFrame({"id": range(rows), "label": repeated}).write_csv(path)


def measure(command: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MB) and the last stderr line of one child process."""
    env = {**os.environ, "NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded"}
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").strip().splitlines() or [""]
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}\n" + "\n".join(lines[-20:]))
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--formats", default="parquet,jsonl")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--one", default="plumber", help="the single description coded first ('' to skip)")
    args = parser.parse_args()
    if args.one:
        seconds, cpu, peak_mb, _ = measure(["uv", "run", "nace-app", "predict", args.one, "--top-k", str(args.top_k)])
        print(f"one text wall {seconds:7.1f} s  CPU {cpu:6.1f} s  peak RSS {peak_mb:7.0f} MB")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "rows.csv"
        write_rows(source, args.rows)
        print(f"input: {args.rows:,} rows, {source.stat().st_size / 1e6:.1f} MB CSV")
        for suffix in args.formats.split(","):
            output = Path(folder) / f"out.{suffix}"
            command = ["uv", "run", "nace-app", "predict", "--input", str(source), "--output", str(output),
                       "--top-k", str(args.top_k)]
            seconds, cpu, peak_mb, last = measure(command)
            print(f"{suffix:<8} wall {seconds:7.1f} s  CPU {cpu:6.1f} s  peak RSS {peak_mb:7.0f} MB  "
                  f"output {output.stat().st_size / 1e6:6.1f} MB  last stderr: {last[:80]!r}")


if __name__ == "__main__":
    main()
