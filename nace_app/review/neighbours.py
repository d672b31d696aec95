"""Similar labelled examples: the training rows nearest to a text by the model's own sentence embedding (cosine).

The embedding is the vector the classification head reads (before its RMS norm, which cosine ignores), so two
texts are close when the model sees them alike: the evidence behind a code. Training rows are embedded once per
(model, data) and cached on disk as a float32 `.npy` of unit rows; a look-up is one matrix-vector product and a
partial sort.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.data.tables import fingerprint
from nace_app.model.classifier import DEFAULT_CHUNK, Classifier
from nace_app.settings.cachefiles import keep_in_cache
from nace_app.settings.errors import NaceAppError

logger = logging.getLogger(__name__)


def sentence_embeddings(classifier: Classifier, texts: list[str], chunk_size: int = DEFAULT_CHUNK,
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Unit-length float32 sentence embeddings (texts, embedding_dim), in chunks of similar length."""
    if classifier.has_label_attention:
        raise NaceAppError("similar examples need one sentence embedding per text; a label-attention model has one "
                           "per class")
    dim = classifier.sentence_dim
    if not texts:
        return np.empty((0, dim), dtype=np.float32)
    numpy_forward = classifier.numpy_forward

    def unit_sentences(ids: list[list[int]], full_width: int, pad_id: int) -> np.ndarray:
        if numpy_forward is not None:
            sentences = numpy_forward.sentences(ids, full_width, pad_id)
        else:
            sentences = classifier.forward.sentences(ids, full_width, pad_id).numpy()
        norms = np.linalg.norm(sentences, axis=-1, keepdims=True)
        return sentences / np.maximum(norms, 1e-12)  # torch.nn.functional.normalize

    return classifier.by_length_chunks(texts, dim, unit_sentences, chunk_size, progress)


@dataclass(frozen=True)
class Neighbour:
    text: str
    code: str
    heading: str
    similarity: float


def cache_file(classifier: Classifier, frame: pl.DataFrame, cache_dir: Path) -> Path:
    """Where the embeddings of `frame`'s rows by `classifier` are kept."""
    return cache_dir / "neighbours" / f"{classifier.fingerprint}-{fingerprint(frame)}.npy"


@dataclass(frozen=True)
class NeighbourIndex:
    """Labelled rows with their unit embeddings; `loaded_from_cache` says whether they were read from disk."""

    classifier: Classifier
    texts: list[str]
    codes: list[str]
    headings: list[str]
    embeddings: np.ndarray  # (rows, dim) float32, unit rows
    cache_path: Path
    loaded_from_cache: bool

    @classmethod
    def build(cls, classifier: Classifier, frame: pl.DataFrame, cache_dir: Path,
              progress: Callable[[int, int], None] | None = None) -> NeighbourIndex:
        """Embed `frame` (columns code, label, optional name) once per (model, data), reusing the disk cache."""
        texts, codes = frame["label"].to_list(), frame["code"].to_list()
        if "name" in frame.columns:
            headings = frame["name"].to_list()
        else:
            headings = [classifier.nomenclature.heading(c) for c in codes]
        path = cache_file(classifier, frame, cache_dir)
        expected = (len(texts), classifier.sentence_dim)
        if path.is_file():
            try:
                embeddings = np.load(path)
                if embeddings.shape == expected and embeddings.dtype == np.float32:
                    return cls(classifier, texts, codes, headings, embeddings, path, True)
            except (OSError, ValueError) as exc:  # a damaged cache file is recomputed, not fatal
                logger.warning("ignoring the unreadable neighbour cache %s: %s", path, exc)
        embeddings = sentence_embeddings(classifier, texts, progress=progress)
        keep_in_cache(path, lambda out: np.save(out, embeddings, allow_pickle=False))
        return cls(classifier, texts, codes, headings, embeddings, path, False)

    def nearest(self, text: str, k: int = 5) -> list[Neighbour]:
        """The k rows most similar to `text`, most similar first."""
        k = min(k, len(self.texts))
        if k <= 0:
            return []
        # numpy's own single-threaded loop, not BLAS: BLAS threads contend with other sessions on a shared server
        # (p95 6 ms against 15 ms for 60,000 rows at load 5 on 2 cores).
        similarity = np.einsum("ij,j->i", self.embeddings, sentence_embeddings(self.classifier, [text])[0])
        best = np.argpartition(-similarity, k - 1)[:k]
        best = best[np.argsort(-similarity[best], kind="stable")]
        return [Neighbour(self.texts[i], self.codes[i], self.headings[i], float(similarity[i])) for i in best]
