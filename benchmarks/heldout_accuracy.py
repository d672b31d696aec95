"""Top-1/top-5 of a model on descriptions never used for training, one line per register.

- `benchmarks/heldout/`: 1,953 official-statistics-style rows (3 per class) written alongside the first demo data;
- `benchmarks/independent/{selection,report}/{definition,index}.csv`: written by writers who saw only the
  headings and one register each, never the training files. `selection` (one item per class and register) is
  what the embedded model stops early on and was chosen by; `report` (the other item) is what its card reports.

Rows whose wording stands word for word in the demo data are left out. "Related" is the share of candidates 2 to
5 in the same NACE section as the first: how much the alternatives a statistician sees make sense together.

Usage: uv run python benchmarks/heldout_accuracy.py [--json] [MODEL_URI ...]   (default: embedded)
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.data.tables import load_labelled
from nace_app.model.opening import open_model
from nace_app.model.ranking import top_k_indices
from nace_app.review.metrics import top_k_accuracy
from nace_app.settings.config import load_settings
from nace_app.settings.logs import configure_logging
from nace_app.sources.resolve import embedded_data_dir

HERE = Path(__file__).resolve().parent
SETS = {"heldout (official style)": HERE / "heldout"} | {
    f"independent {half}: {path.stem}": path
    for half in ("report", "selection") for path in sorted((HERE / "independent" / half).glob("*.csv"))
}


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


TRAINING_LABELS = {_normalise(t) for t in load_labelled(embedded_data_dir())["label"].to_list()}


def score(classifier, path: Path) -> dict[str, float]:
    """Rows whose wording stands word for word in the demo data are left out: they measure recall, not coding."""
    frame = load_labelled(path)
    fresh = [_normalise(t) not in TRAINING_LABELS for t in frame["label"].to_list()]
    left_out = frame.height - sum(fresh)
    frame = frame.filter(pl.Series(fresh))
    probabilities = classifier.predict_proba(frame["label"].to_list())
    truth = np.array([classifier.label_index.get(code, -1) for code in frame["code"].to_list()])
    top5 = top_k_indices(probabilities, 5)
    sections = np.array([classifier.nomenclature.section_of(code) for code in classifier.labels])
    related = float(np.mean(sections[top5[:, 1:]] == sections[top5[:, :1]]))
    return {"rows": frame.height, "left_out": left_out, "related": round(related, 4),
            "top1": round(top_k_accuracy(truth, probabilities, 1), 4),
            "top5": round(top_k_accuracy(truth, probabilities, 5), 4)}


def main(argv: list[str]) -> None:
    configure_logging()
    as_json = "--json" in argv
    uris = [a for a in argv if a != "--json"] or ["embedded"]
    results = {}
    for uri in uris:
        classifier = open_model(uri, load_settings()).classifier
        results[uri] = {name: score(classifier, path) for name, path in SETS.items()}
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for uri, sets in results.items():
        print(uri)
        for name, figures in sets.items():
            print(f"  {name:<36} {figures['rows']:>5} rows  top-1 {figures['top1']:.3f}  top-5 {figures['top5']:.3f}"
                  f"  candidates 2-5 in the section of the first {figures['related']:.0%}"
                  f"  ({figures['left_out']} exact matches with the demo data left out)")


if __name__ == "__main__":
    main(sys.argv[1:])
