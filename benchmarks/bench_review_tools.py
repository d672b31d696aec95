"""Benchmark: similar-example look-ups over 60,000 rows and per-class explanations of a 10,500-row test split.

Usage: uv run python benchmarks/bench_review_tools.py [--rows 60000] [--queries 200] [--test-rows 10500] [--threads N]

Both use the embedded demo model. The demo's 40,514 descriptions (34,436 in train + validation, 6,078 in test)
are too few, so the tables are grown with variants of each description (a different wording around the same
activity, so that every text is distinct and gets its own embedding). Look-ups are `NeighbourIndex.nearest(text,
k=5)` for test-split texts, embedding of the query included; the per-class table is `class_words` from an empty
cache. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

VARIANTS = ("{}", "{} (small firm)", "we do {}", "{}, family business", "our company: {}", "{} - since 1998",
            "self-employed, {}", "{} in town")


def grown(frame: pl.DataFrame, rows: int) -> pl.DataFrame:
    """`rows` rows: each description in turn under each variant wording, so no two texts are equal."""
    table = pl.concat([frame.with_columns(label=pl.format(template, pl.col("label"))) for template in VARIANTS])
    if table.height < rows:
        raise SystemExit(f"only {table.height} distinct variants: ask for fewer rows")
    return table.head(rows)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--test-rows", type=int, default=10_500)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    load_before = ", ".join(f"{value:.1f}" for value in os.getloadavg())

    import torch

    from nace_app.data.tables import load_labelled, split
    from nace_app.explain.class_words import class_words
    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import load_model
    from nace_app.review.neighbours import NeighbourIndex
    from nace_app.sources.resolve import embedded_data_dir, embedded_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    classifier = Classifier(load_model(embedded_model_dir()), name="embedded")
    splits = split(load_labelled(embedded_data_dir()))
    table = grown(pl.concat([splits.train, splits.validation]), args.rows)  # the queries come from the test split
    test = grown(splits.test, args.test_rows)
    queries = splits.test["label"].to_list()[: args.queries]
    results: list[tuple[str, str]] = []

    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder)
        start = time.perf_counter()
        index = NeighbourIndex.build(classifier, table, cache)
        results.append((f"embed {table.height:,} rows and write the cache (s)", f"{time.perf_counter() - start:.1f}"))
        start = time.perf_counter()
        index = NeighbourIndex.build(classifier, table, cache)
        assert index.loaded_from_cache
        results.append(("build again from the cache (s)", f"{time.perf_counter() - start:.2f}"))
        for text in queries[:10]:  # warm-up
            index.nearest(text)
        timings = []
        for text in queries:
            start = time.perf_counter()
            index.nearest(text, k=5)
            timings.append((time.perf_counter() - start) * 1000)
        results.append((f"neighbour look-up, k=5, {len(queries)} queries: p50 (ms)", f"{statistics.median(timings):.2f}"))
        results.append(("neighbour look-up: p95 (ms)", f"{percentile(timings, 0.95):.2f}"))
        results.append(("neighbour look-up: max (ms)", f"{max(timings):.2f}"))

        start = time.perf_counter()
        words = class_words(classifier, test, cache)
        elapsed = time.perf_counter() - start
        results.append((f"per-class words, {test.height:,} test rows, empty cache (s)", f"{elapsed:.1f}"))
        results.append(("per-class words: ms per test row", f"{elapsed / test.height * 1000:.2f}"))
        start = time.perf_counter()
        class_words(classifier, test, cache)
        results.append(("per-class words from the cache (s)", f"{time.perf_counter() - start:.2f}"))
        results.append(("classes / table rows", f"{words['code'].n_unique()} / {words.height:,}"))

    results.append(("source rows: train + validation / test split", f"{splits.train.height + splits.validation.height:,} / "
                    f"{splits.test.height:,}"))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Machine: {machine}; {time.strftime('%Y-%m-%d')}; load average before the run {load_before}, after {load}; "
          f"torch threads {torch.get_num_threads()}. Model: the embedded demo model.\n")
    print("| measure | value |\n|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
