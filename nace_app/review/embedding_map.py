"""The model's view of the test rows as a 2D map (PCA of its own sentence embeddings), and nearest words.

Both are computed once per (model, data) and kept under the cache folder (`embedding_map/`), written atomically.
PCA is numpy's SVD of the centred embeddings: exact, deterministic (each axis's sign fixed so that its largest
loading is positive), and no new dependency.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.data.tables import fingerprint
from nace_app.model.classifier import Classifier
from nace_app.review.neighbours import sentence_embeddings
from nace_app.settings.cachefiles import write_atomically

logger = logging.getLogger(__name__)

VOCABULARY_SIZE = 8000
_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class Projection:
    """Points in 2D and the share of the embeddings' variance each axis keeps (largest first)."""

    coordinates: np.ndarray  # (rows, 2) float32
    explained_variance: np.ndarray  # (2,) float64, shares of the total


def pca_2d(embeddings: np.ndarray) -> Projection:
    """The first two principal components of `embeddings` (rows, dim)."""
    rows = embeddings.shape[0]
    if rows == 0:
        return Projection(np.empty((0, 2), dtype=np.float32), np.zeros(2))
    centred = embeddings.astype(np.float64) - embeddings.mean(axis=0, dtype=np.float64)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    largest = axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)]
    axes = axes * np.where(largest < 0, -1.0, 1.0)[:, None]
    coordinates = np.zeros((rows, 2))
    coordinates[:, : len(axes)] = centred @ axes.T  # a single row or a 1-D embedding leaves an axis flat
    total = float((singular**2).sum())
    shares = np.zeros(2)
    if total > 0:
        shares[: len(axes)] = singular[: len(axes)] ** 2 / total
    return Projection(coordinates.astype(np.float32), shares)


def _cached(path: Path, compute) -> dict[str, np.ndarray]:
    """Arrays from the `.npz` at `path`, or computed by `compute()` and written there atomically."""
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as exc:  # a damaged cache file is recomputed, not fatal
            logger.warning("ignoring the unreadable embedding-map cache %s: %s", path, exc)
    arrays = compute()
    write_atomically(path, lambda out: np.savez(out, **arrays))
    return arrays


def rows_map(classifier: Classifier, rows: pl.DataFrame, cache_dir: Path) -> Projection:
    """The sentence embeddings of `rows` (the test split) in 2D, from the disk cache when there."""
    path = cache_dir / "embedding_map" / f"{classifier.fingerprint}-{fingerprint(rows)}-pca.npz"

    def compute() -> dict[str, np.ndarray]:
        projection = pca_2d(sentence_embeddings(classifier, rows["label"].to_list()))
        return {"coordinates": projection.coordinates, "explained_variance": projection.explained_variance}

    arrays = _cached(path, compute)
    return Projection(arrays["coordinates"], arrays["explained_variance"])


def vocabulary(texts: list[str], size: int = VOCABULARY_SIZE) -> list[str]:
    """The most frequent words (three letters or more, lower case) of `texts`, seen at least twice."""
    counts = Counter(word for text in texts for word in _WORD.findall(text.lower()))
    return [word for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if count >= 2][:size]


@dataclass(frozen=True)
class WordSpace:
    """Words of the training texts embedded by the model, each alone (unit rows): neighbours by cosine."""

    classifier: Classifier
    words: list[str]
    embeddings: np.ndarray  # (words, dim) float32, unit rows

    @classmethod
    def build(cls, classifier: Classifier, train: pl.DataFrame, cache_dir: Path) -> WordSpace:
        words = vocabulary(train["label"].to_list())
        path = cache_dir / "embedding_map" / f"{classifier.fingerprint}-{fingerprint(train)}-words.npz"
        arrays = _cached(path, lambda: {"words": np.array(words, dtype=np.str_),
                                        "embeddings": sentence_embeddings(classifier, words)})
        return cls(classifier, arrays["words"].tolist(), arrays["embeddings"])

    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words the model places closest to `word` (itself left out), most similar first."""
        query = word.strip().lower()
        if not query or not self.words:
            return []
        similarity = self.embeddings @ sentence_embeddings(self.classifier, [query])[0]
        order = [i for i in np.argsort(-similarity, kind="stable")[: k + 1] if self.words[i] != query][:k]
        return [(self.words[i], float(similarity[i])) for i in order]
