"""Benchmark: coding N rows on Spark `local[2]` against the single-process streaming CLI, and what N executors would do.

Usage: uv run python benchmarks/bench_spark.py [--rows 1000000] [--warmup-rows 2000] [--top-k 5]
       [--executors 4,8,16,32] [--cores-per-executor 2]

It writes a parquet of `--rows` rows (columns id, label: the embedded demo's texts repeated and shuffled), then runs,
each as a whole process measured with `os.wait4` (see bench_predict_stream.py), with the embedded model:
- `nace-app predict --input rows.parquet --output single.parquet` (one process, streaming);
- `nace-app predict --engine spark --spark-master local[2] --input rows.parquet --output spark.parquet`.
Each engine is also run on `--warmup-rows` rows: the difference gives the steady rate without the fixed costs
(JVM and session start, imports, model loading). While Spark runs, /proc is sampled every 0.2 s for the Python
workers (`pyspark.daemon` children) and their peak resident memory (VmHWM) is reported, with the JVM's.
The cluster estimate assumes what this job does: independent tasks, no shuffle, so throughput grows with cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict_stream import measure  # noqa: E402

PARTITION_BYTES = "4m"  # a 1M-row parquet is ~10 MB: several tasks for the two local cores


def write_parquet(path: Path, rows: int, seed: int = 0) -> None:
    import polars as pl

    from nace_app.data.tables import load_labelled
    from nace_app.sources.resolve import embedded_data_dir

    texts = load_labelled(embedded_data_dir())["label"]
    repeated = pl.concat([texts] * (rows // texts.len() + 1))[:rows].shuffle(seed=seed)
    pl.DataFrame({"id": range(rows), "label": repeated}).write_parquet(path)


def _status(pid: str) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class WorkerMemory:
    """Peak resident memory (MB) of each Python worker and JVM seen while sampling."""

    python: dict[str, float] = field(default_factory=dict)
    jvm: dict[str, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        while not self.done.wait(0.2):
            for pid in (p.name for p in Path("/proc").iterdir() if p.name.isdigit()):
                command = _cmdline(pid)
                kind = (self.python if "pyspark.daemon" in command or "pyspark.worker" in command
                        else self.jvm if "java" in command and "spark" in command else None)
                peak = _status(pid).get("VmHWM", "0 kB").split()[0]
                if kind is not None and peak.isdigit():
                    kind[pid] = max(kind.get(pid, 0.0), int(peak) / 1024)


def run_spark(source: Path, output: Path, top_k: int) -> tuple[float, WorkerMemory]:
    memory = WorkerMemory()
    sampler = threading.Thread(target=memory.sample, daemon=True)
    sampler.start()
    command = ["uv", "run", "nace-app", "predict", "--engine", "spark", "--spark-master", "local[2]", "--input",
               str(source), "--output", str(output), "--top-k", str(top_k)]
    try:
        seconds, _, _, _ = measure(command)
    finally:
        memory.done.set()
        sampler.join()
    return seconds, memory


def run_single(source: Path, output: Path, top_k: int) -> tuple[float, float]:
    seconds, _, peak_mb, _ = measure(["uv", "run", "nace-app", "predict", "--input", str(source), "--output", str(output),
                                   "--top-k", str(top_k)])
    return seconds, peak_mb


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--warmup-rows", type=int, default=2_000)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--executors", default="4,8,16,32")
    parser.add_argument("--cores-per-executor", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--conf spark.sql.files.maxPartitionBytes={PARTITION_BYTES} "
                                                 "--conf spark.ui.enabled=false pyspark-shell")
    with tempfile.TemporaryDirectory() as folder:
        small, large = Path(folder) / "small.parquet", Path(folder) / "rows.parquet"
        write_parquet(small, args.warmup_rows)
        write_parquet(large, args.rows)
        print(f"input: {args.rows:,} rows, {large.stat().st_size / 1e6:.1f} MB parquet; warm-up {args.warmup_rows:,} rows")

        single_small, _ = run_single(small, Path(folder) / "single-small.parquet", args.top_k)
        single, single_peak = run_single(large, Path(folder) / "single.parquet", args.top_k)
        spark_small, _ = run_spark(small, Path(folder) / "spark-small.parquet", args.top_k)
        spark, memory = run_spark(large, Path(folder) / "spark.parquet", args.top_k)

    extra = args.rows - args.warmup_rows
    if single <= single_small or spark <= spark_small:
        raise SystemExit(f"single {single:.1f} s vs {single_small:.1f} s warm-up, spark {spark:.1f} s vs {spark_small:.1f} s: "
                         "--rows is too small against the fixed costs (or the machine is busy) for a steady rate")
    single_rate = extra / (single - single_small)
    spark_rate = extra / (spark - spark_small)
    print(f"single process  wall {single:7.1f} s  {args.rows / single:8,.0f} rows/s overall  {single_rate:8,.0f} rows/s "
          f"steady  fixed {single_small:5.1f} s  peak RSS {single_peak:6.0f} MB")
    print(f"spark local[2]  wall {spark:7.1f} s  {args.rows / spark:8,.0f} rows/s overall  {spark_rate:8,.0f} rows/s "
          f"steady  fixed {spark_small:5.1f} s")
    workers = sorted(memory.python.values(), reverse=True)
    print(f"python workers  {len(workers)} seen, peak RSS each (MB): {', '.join(f'{w:.0f}' for w in workers[:6])}")
    print(f"spark JVM       peak RSS (MB): {', '.join(f'{m:.0f}' for m in memory.jvm.values())}")
    per_core = spark_rate / 2
    print(f"per core on Spark: {per_core:,.0f} rows/s steady. Estimate for 30,000,000 rows, "
          f"{args.cores_per_executor} cores per executor (linear: independent tasks, no shuffle):")
    for executors in (int(n) for n in args.executors.split(",")):
        rate = per_core * executors * args.cores_per_executor
        print(f"  {executors:>3} executors  {rate:10,.0f} rows/s  {30e6 / rate / 60:6.1f} min + fixed costs "
              f"(~{spark_small:.0f} s here)")


if __name__ == "__main__":
    main()
