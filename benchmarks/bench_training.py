"""Benchmark: the default training run (the Train page's and `nace-app train --data embedded`'s), by the CLI path.

Usage: uv run python benchmarks/bench_training.py [--quick] [--repeats 1] [--out benchmarks/training_results.md]
       [-- extra nace-app train flags, e.g. -- --rows-per-class 20 --epochs 6]

Each command runs as a whole process; CPU-seconds are user+sys of it and of every process it waited for (the
training child), from `getrusage(RUSAGE_CHILDREN)` before and after, so a loaded machine inflates them far less
than wall time. Peak RSS is the largest single process's. The CLI's own start-up is `nace-app train --help`
(the interpreter and our CLI, nothing trained); the default run's figure "beyond start-up" subtracts it.
`--quick` is a smoke test on a small sample (1,500 rows, 1 epoch): its accuracy means nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NACE_APP = [sys.executable, "-m", "nace_app.cli.main"]
QUICK_FLAGS = ["--sample", "1500", "--epochs", "1"]


def measured(command: list[str]) -> dict[str, float | str]:
    """CPU-seconds (this command and its waited-for children), wall seconds, peak RSS (MB) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_seconds": cpu, "wall_seconds": wall, "peak_rss_mb": after.ru_maxrss / 1024, "stdout": done.stdout}


def default_run(work: Path, extra: list[str]) -> dict[str, float]:
    figures = measured([*NACE_APP, "train", "--data", "embedded", "--json", "--out", str(work / "model"), *extra])
    summary = json.loads(figures.pop("stdout"))
    return {**figures, "test_top1": summary["test"]["top1_accuracy"], "validation_top1":
            summary["validation"]["top1_accuracy"], "epochs_run": summary["epochs_run"],
            "train_rows": summary["timing"]["rows"], **{f"child_{k}_seconds": v for k, v in summary["timing"].items()
                                                        if k not in ("rows", "rows_seen")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test on a small sample")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("extra", nargs="*", help="extra `nace-app train` flags, after --")
    args = parser.parse_args()
    extra = (QUICK_FLAGS if args.quick else []) + args.extra

    startup = [measured([*NACE_APP, "train", "--help"]) for _ in range(args.repeats)]
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            runs.append(default_run(Path(folder), extra))
    startup_cpu = statistics.median(float(s["cpu_seconds"]) for s in startup)
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    lines = [f"# Default training run ({'quick smoke test' if args.quick else 'nace-app train --data embedded'})", "",
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, median of {args.repeats}; flags: {' '.join(extra) or '(none)'}", "",
             "| figure | value |", "|---|---|",
             f"| CLI start-up (`nace-app train --help`), CPU-s | {startup_cpu:.1f} |",
             f"| default run, CPU-s | {median['cpu_seconds']:.1f} |",
             f"| default run beyond start-up, CPU-s | {median['cpu_seconds'] - startup_cpu:.1f} |",
             f"| default run, wall s | {median['wall_seconds']:.1f} |",
             f"| default run, peak RSS MB | {median['peak_rss_mb']:.0f} |",
             f"| test top-1 | {median['test_top1']:.4f} |",
             f"| validation top-1 | {median['validation_top1']:.4f} |",
             f"| epochs run, training rows | {median['epochs_run']:.0f}, {median['train_rows']:.0f} |",
             "| child's wall s: start-up, prepare, train, finish | "
             + ", ".join(f"{median[f'child_{k}_seconds']:.1f}" for k in ("startup", "prepare", "train", "finish"))
             + " |",
             f"| CPU-s: child's start-up, the run itself, the CLI process (data, MLflow) | "
             f"{median['child_startup_cpu_seconds']:.1f}, {median['child_cpu_seconds']:.1f}, "
             f"{median['cpu_seconds'] - median['child_startup_cpu_seconds'] - median['child_cpu_seconds']:.1f} |"]
    table = "\n".join(lines) + "\n"
    print(table)
    print(json.dumps({"startup_cpu_seconds": startup_cpu, **median}))
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
