"""Top-1/top-5 of a model on descriptions never used for training, one line per register.

- `benchmarks/heldout/`: 1,953 official-statistics-style rows (3 per class) written alongside the first demo data;
- `benchmarks/independent/{selection,report}/{definition,index}.csv`: written by writers who saw only the
  headings and one register each, never the training files. `selection` (one item per class and register) is
  what the embedded model stops early on and was chosen by; `report` (the other item) is what its card reports.

Usage: uv run python benchmarks/heldout_accuracy.py [--json] [MODEL_URI ...]   (default: embedded)
"""

import json
import sys
from pathlib import Path

import numpy as np

from nace_app.cli import configure_logging
from nace_app.config import load_settings
from nace_app.data import load_labelled
from nace_app.metrics import top_k_accuracy
from nace_app.workspace import open_model

HERE = Path(__file__).resolve().parent
SETS = {"heldout (official style)": HERE / "heldout"} | {
    f"independent {half}: {path.stem}": path
    for half in ("report", "selection") for path in sorted((HERE / "independent" / half).glob("*.csv"))
}


def score(classifier, path: Path) -> dict[str, float]:
    frame = load_labelled(path)
    probabilities = classifier.predict_proba(frame["label"].to_list())
    truth = np.array([classifier.label_index.get(code, -1) for code in frame["code"].to_list()])
    return {"rows": frame.height, "top1": round(top_k_accuracy(truth, probabilities, 1), 4),
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
            print(f"  {name:<36} {figures['rows']:>5} rows  top-1 {figures['top1']:.3f}  top-5 {figures['top5']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
