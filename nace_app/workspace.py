"""Opening the configured model and data together, and caching test-split predictions on disk."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.classifier import Classifier
from nace_app.config import Settings
from nace_app.data import Splits, load_labelled, split
from nace_app.modelio import load_model
from nace_app.sources import ResolvedSource, resolve_data, resolve_model


@dataclass
class DataSet:
    source: ResolvedSource
    frame: pl.DataFrame

    @cached_property
    def splits(self) -> Splits:
        return split(self.frame)

    @property
    def fingerprint(self) -> str:
        return self.splits.data_fingerprint  # hashed once, when the data is split


def open_data(settings: Settings) -> DataSet:
    source = resolve_data(settings)
    return DataSet(source, load_labelled(source.local_path))


@dataclass
class Workspace:
    """The active model and, loaded on first use, the active data, with why each was chosen."""

    settings: Settings
    model_source: ResolvedSource
    classifier: Classifier
    _data: DataSet | None = field(default=None, repr=False)

    @property
    def data(self) -> DataSet:
        if self._data is None:
            self._data = open_data(self.settings)
        return self._data

    def fallbacks(self) -> list[str]:
        reasons = [self.model_source.fallback_reason]
        if self._data is not None:
            reasons.append(self._data.source.fallback_reason)
        return [r for r in reasons if r]


def open_model(settings: Settings, source: ResolvedSource, data: DataSet | None = None,
               data_loader=None) -> tuple[Classifier, DataSet | None]:
    """Load the model at `source`; the data is read only if the model cannot name its classes by itself."""
    holder = {"data": data}

    def dataset_codes() -> list[str]:
        if holder["data"] is None:
            holder["data"] = (data_loader or open_data)(settings)
        return holder["data"].frame["code"].to_list()

    loaded = load_model(source.local_path, dataset_codes)
    return Classifier(loaded, name=source.uri), holder["data"]


def open_workspace(settings: Settings) -> Workspace:
    source = resolve_model(settings)
    classifier, data = open_model(settings, source)
    return Workspace(settings, source, classifier, data)


def cached_probabilities(classifier: Classifier, texts: list[str], data_fingerprint: str, cache_dir: Path,
                         progress=None) -> np.ndarray:
    """Probabilities for `texts`, stored on disk per (model fingerprint, data fingerprint): restarts reuse them."""
    folder = cache_dir / "predictions"
    path = folder / f"{classifier.fingerprint}-{data_fingerprint}-{len(texts)}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts), classifier.num_classes):
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed below
    probabilities = classifier.predict_proba(texts, progress=progress).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.partial")
    with os.fdopen(handle, "wb") as out:
        np.save(out, probabilities, allow_pickle=False)
    os.replace(tmp, path)
    return probabilities
