"""Top-1/top-5 of a model on the held-out descriptions in benchmarks/heldout/ (never used for training).

Usage: uv run python benchmarks/heldout_accuracy.py [MODEL_URI ...]   (default: embedded)
"""

import sys
from pathlib import Path

import numpy as np

from nace_app.cli import configure_logging
from nace_app.config import load_settings
from nace_app.data import load_labelled
from nace_app.metrics import top_k_accuracy
from nace_app.sources import resolve
from nace_app.workspace import open_model

HELDOUT = Path(__file__).resolve().parent / "heldout"


def main(uris: list[str]) -> None:
    configure_logging()
    heldout = load_labelled(HELDOUT)
    for uri in uris:
        settings = load_settings().with_overrides(model_uri=uri)
        classifier, _ = open_model(settings, resolve("model", uri, True, settings))
        probabilities = classifier.predict_proba(heldout["label"].to_list())
        truth = np.array([classifier.label_index.get(code, -1) for code in heldout["code"].to_list()])
        print(f"{uri}: {heldout.height} held-out rows, top-1 {top_k_accuracy(truth, probabilities, 1):.3f}, "
              f"top-5 {top_k_accuracy(truth, probabilities, 5):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["embedded"])
