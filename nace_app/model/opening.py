"""Opening a model or the labelled data by URI: resolve the source, load the format, build the classifier.

Every caller (the CLI, the app's picker, the benchmarks) opens models through `open_model`, so the rule that
pickles are never read from what a browser user typed lives here, as `allow_pickle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl

from nace_app.data.tables import Splits, load_labelled, split
from nace_app.model.classifier import Classifier
from nace_app.model.formats import is_own_format, load_model
from nace_app.settings.config import Settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import ResolvedSource, drop_cached_copy, resolve, resolve_data

Calibrate = Callable[[Classifier], dict[str, Any]]  # a model -> its calibration record (calibration.json's content)


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
    """The configured data; a cached download that no longer reads is dropped and fetched again, once."""
    source = resolve_data(settings)
    try:
        return DataSet(source, load_labelled(source.local_path))
    except NaceAppError:
        if not drop_cached_copy(source, settings):
            raise
    source = resolve_data(settings)
    return DataSet(source, load_labelled(source.local_path))


@dataclass
class OpenedModel:
    classifier: Classifier
    source: ResolvedSource
    data: DataSet | None  # read only when the model could not name its classes by itself


def open_model(uri: str | None, settings: Settings, *, explicit: bool = True, allow_pickle: bool = True,
               data: DataSet | None = None, data_loader: Callable[[Settings], DataSet] = open_data,
               calibrate: Calibrate | None = None) -> OpenedModel:
    """The model at `uri` (default: the configured one, with its fallback rule when not set explicitly).

    `allow_pickle=False` refuses the library's pickled format: for URIs a browser user typed. `calibrate` fits the
    calibration of a model whose folder has no calibration.json (`review.calibration.runtime_calibration`).
    """
    if uri is None:
        uri, explicit = settings.model_uri, settings.model_uri_explicit
    source = resolve("model", uri, explicit, settings, allow_pickle=allow_pickle)  # refused before any download
    if not allow_pickle and not is_own_format(source.local_path):
        raise NaceAppError("only models in NACE Explorer's own format (JSON + safetensors) can be opened here: "
                           "the library's pickled format is read only from the configured sources")
    holder = {"data": data}

    def dataset_codes() -> list[str]:
        if holder["data"] is None:
            holder["data"] = data_loader(settings)
        return holder["data"].frame["code"].to_list()

    try:
        loaded = load_model(source.local_path, dataset_codes)
    except NaceAppError:  # a cached download that no longer loads is dropped and fetched again, once
        if not drop_cached_copy(source, settings):
            raise
        source = resolve("model", uri, explicit, settings, allow_pickle=allow_pickle)
        loaded = load_model(source.local_path, dataset_codes)
    classifier = Classifier(loaded, name=source.uri)
    if classifier.calibration is None and calibrate is not None:
        classifier.calibrate_with(calibrate(classifier))
    return OpenedModel(classifier, source, holder["data"])


@dataclass
class Workspace:
    """The configured model and, loaded on first use, the configured data, with why each was chosen."""

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


def open_workspace(settings: Settings, calibrate: Calibrate | None = None) -> Workspace:
    opened = open_model(None, settings, calibrate=calibrate)
    return Workspace(settings, opened.source, opened.classifier, opened.data)
