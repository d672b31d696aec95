"""A model on descriptions it never trained on: accuracy, calibration and prediction sets, one line per set.

- `shifted report`: the `report` part of `nace_app/resources/shifted_text.csv`, written apart from the training
  writers, with rarer words; the `select` part chose the recipe and stopped training, the `calibrate` part
  calibrates models that ship no calibration of their own;
- the demo data's test split (its writers also wrote the training rows: the kindest set);
- `benchmarks/independent/report/` and `benchmarks/heldout/`: earlier held-out sets of the same writers' kind.

Rows whose wording stands word for word in the demo data are left out. For each set: top-1, top-5, top-1 ECE
before and after the model's temperature, and at 90%: the sets' coverage, mean size, share of one-code sets and
their accuracy. "Related" is the share of candidates 2 to 5 in the section of the first.

Usage: uv run python benchmarks/heldout_accuracy.py [--json] [--level 0.9] [MODEL_URI ...]   (default: embedded)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.data.tables import load_labelled, prepare_labelled, split
from nace_app.model.opening import open_model
from nace_app.model.ranking import top_k_indices
from nace_app.review.calibration import calibration_of, held_out_figures, runtime_calibration, shifted_text
from nace_app.review.conformal import true_indices
from nace_app.review.metrics import top_k_accuracy
from nace_app.settings.config import load_settings
from nace_app.settings.logs import configure_logging
from nace_app.sources.resolve import embedded_data_dir

HERE = Path(__file__).resolve().parent


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def held_out_sets() -> dict[str, pl.DataFrame]:
    demo = load_labelled(embedded_data_dir())
    sets = {f"shifted {part}: {register}": prepare_labelled(shifted_text(part).filter(pl.col("register") == register))
            for part in ("report", "select") for register in ("definition", "index")}
    sets["demo test split"] = split(demo).test
    sets |= {f"independent report: {path.stem}": load_labelled(path)
             for path in sorted((HERE / "independent" / "report").glob("*.csv"))}
    sets["heldout (official style)"] = load_labelled(HERE / "heldout")
    known = {_normalise(t) for t in demo["label"].to_list()}
    return {name: frame if name == "demo test split" else
            frame.filter(pl.Series([_normalise(t) not in known for t in frame["label"].to_list()]))
            for name, frame in sets.items()}


def score(classifier, frame: pl.DataFrame, level: float) -> dict[str, float]:
    probabilities = classifier.predict_proba(frame["label"].to_list())
    truth = true_indices(classifier.labels, frame["code"].to_list())
    top5 = top_k_indices(probabilities, 5)
    sections = np.array([classifier.nomenclature.section_of(code) for code in classifier.labels])
    figures = held_out_figures("", calibration_of(classifier), level, probabilities, truth)
    return {"rows": frame.height, "top1": round(top_k_accuracy(truth, probabilities, 1), 4),
            "top5": round(top_k_accuracy(truth, probabilities, 5), 4),
            "mean_top1_probability": round(float(probabilities.max(axis=1).mean()), 4),
            "ece_before": round(figures.ece_before, 4), "ece_after": round(figures.ece_after, 4),
            "coverage": round(figures.coverage, 4), "mean_set_size": round(figures.mean_set_size, 2),
            "one_code_sets": round(figures.singleton_share, 4), "one_code_accuracy": round(figures.singleton_accuracy, 4),
            "related": round(float(np.mean(sections[top5[:, 1:]] == sections[top5[:, :1]])), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uris", nargs="*", default=["embedded"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--level", type=float, default=0.9)
    args = parser.parse_args()
    configure_logging()
    settings = load_settings()
    sets = held_out_sets()
    results = {}
    for uri in args.uris:
        classifier = open_model(uri, settings, calibrate=runtime_calibration(settings.cache_dir)).classifier
        results[uri] = {name: score(classifier, frame, args.level) for name, frame in sets.items()}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for uri, figures in results.items():
        print(uri)
        print(f"  {'set':<34} {'rows':>5}  top-1  top-5  conf.  ECE before/after  {args.level:.0%} sets: coverage  size"
              "  one-code share/right")
        for name, f in figures.items():
            print(f"  {name:<34} {f['rows']:>5}  {f['top1']:.3f}  {f['top5']:.3f}  {f['mean_top1_probability']:.3f}"
                  f"  {f['ece_before']:.3f} / {f['ece_after']:.3f}      {f['coverage']:.3f}  {f['mean_set_size']:5.1f}"
                  f"  {f['one_code_sets']:.3f} / {f['one_code_accuracy']:.3f}")


if __name__ == "__main__":
    main()
