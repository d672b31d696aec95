"""Test-split probabilities kept on disk per (model fingerprint, data fingerprint): restarts reuse them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nace_app.model.classifier import Classifier
from nace_app.settings.cachefiles import keep_in_cache


def cache_file(classifier: Classifier, rows: int, data_fingerprint: str, cache_dir: Path) -> Path:
    """Where the probabilities of `rows` texts of a dataset by `classifier` are kept."""
    return cache_dir / "predictions" / f"{classifier.fingerprint}-{data_fingerprint}-{rows}.npy"


def cached_probabilities(classifier: Classifier, texts: list[str], data_fingerprint: str, cache_dir: Path,
                         progress=None) -> np.ndarray:
    """Probabilities for `texts` (float32), from the disk cache when a file of the right shape is there."""
    path = cache_file(classifier, len(texts), data_fingerprint, cache_dir)
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts), classifier.num_classes):
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed below
    probabilities = classifier.predict_proba(texts, progress=progress).astype(np.float32)
    keep_in_cache(path, lambda out: np.save(out, probabilities, allow_pickle=False))
    return probabilities
