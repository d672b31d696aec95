"""The disk caches a server's first clicks read (the training rows' embeddings for similar examples, the test
split's scores for Review), filled once per model and data by the start-up's warm-up.

For a mean-pooling model the work runs in a child process: it is seconds of Python (tokenizing 60,000 rows) that,
in a thread of the server, would hold the interpreter against every session's clicks. Other models are filled in
the calling thread (a child would need the library's torch model, and their explanations need torch anyway).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import polars as pl

from nace_app.model.classifier import Classifier
from nace_app.review import neighbours, prediction_cache
from nace_app.review.neighbours import NeighbourIndex
from nace_app.review.prediction_cache import cached_probabilities


def _embed_training_rows(classifier: Classifier, train: pl.DataFrame, cache_dir: Path) -> None:
    NeighbourIndex.build(classifier, train, cache_dir)


def _score_test_split(classifier: Classifier, texts: list[str], data_fingerprint: str, cache_dir: Path) -> None:
    cached_probabilities(classifier, texts, data_fingerprint, cache_dir)


def fill_disk_caches(classifier: Classifier, train: pl.DataFrame, test_texts: list[str], data_fingerprint: str,
                     cache_dir: Path, embedding: AbstractContextManager, embedded: Callable[[], None]) -> None:
    """Embed the training rows inside `embedding` (a lock that a click needing them waits on), call `embedded()`,
    then score the test split; an error in either is raised here. When both files are already there (a restarted
    server), no child is started: its start-up alone cost 2 CPU-s while the first pages were being drawn."""
    if (neighbours.cache_file(classifier, train, cache_dir).is_file()
            and prediction_cache.cache_file(classifier, len(test_texts), data_fingerprint, cache_dir).is_file()):
        embedded()
        return
    with contextlib.ExitStack() as stack:
        child = None
        if classifier.numpy_forward is not None:
            child = stack.enter_context(ProcessPoolExecutor(max_workers=1,
                                                            mp_context=multiprocessing.get_context("spawn")))

        def run(work: Callable[..., None], *arguments: object) -> None:
            if child is None:
                work(classifier, *arguments)
            else:
                child.submit(work, classifier, *arguments).result()

        try:
            with embedding:
                run(_embed_training_rows, train, cache_dir)
        finally:
            embedded()
        run(_score_test_split, test_texts, data_fingerprint, cache_dir)
