"""Coding a whole register where it lives: a Spark DataFrame in, the same DataFrame with the coding columns out.

The model is opened on the driver (so a bad URI or a damaged model fails in one line before any job starts), its
files travel inside the `mapInArrow` function: classic PySpark broadcasts a function that large once per executor
(torrent broadcast), Spark Connect sends it with the plan. Each Python worker writes them to a temporary folder,
loads the model once and keeps it for every later task (`spark.python.worker.reuse`, on by default), keyed by the
model's fingerprint. Each Arrow batch is coded by `batch.code_chunk` and gets `CodedChunk.coded_columns`: the very
columns of the single-process command line, so both give the same answers in the same columns.

pyspark is an optional extra (`uv sync --extra spark`); this module imports it only inside its functions.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nace_app.coding.batch import CODED_COLUMNS, code_chunk, name_suffix
from nace_app.model.classifier import Classifier
from nace_app.model.opening import open_model
from nace_app.settings.config import Settings, load_settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import LIBRARY_MODEL_FILES, OPTIONAL_OWN_FILES, OWN_MODEL_FILES

_loaded: dict[str, Classifier] = {}  # this Python worker's model, by fingerprint: one at a time
_loading = threading.Lock()


@dataclass(frozen=True)
class ShippedModel:
    """A model's files as bytes, small enough to travel with a Spark task, and what names its classes."""

    fingerprint: str
    files: dict[str, bytes]
    labels: list[str]  # the driver's class codes: a library folder without value_encoder.pkl names them so
    calibration: dict[str, Any] | None = None  # the driver's (a runtime fit when the folder has no calibration.json)

    @classmethod
    def of(cls, classifier: Classifier, folder: Path) -> ShippedModel:
        names = [n for n in (*OWN_MODEL_FILES, *OPTIONAL_OWN_FILES, *LIBRARY_MODEL_FILES) if (folder / n).is_file()]
        return cls(classifier.fingerprint, {n: (folder / n).read_bytes() for n in names}, list(classifier.labels),
                   classifier.calibration)

    def classifier(self) -> Classifier:
        """Loaded once per Python worker with one BLAS and torch thread: Spark runs one task per core already."""
        with _loading:
            if self.fingerprint not in _loaded:
                _loaded.clear()
                _one_thread()
                _loaded[self.fingerprint] = self._load()
            return _loaded[self.fingerprint]

    def _load(self) -> Classifier:
        from nace_app.model.formats import load_model

        folder = Path(tempfile.mkdtemp(prefix="nace-spark-model-"))
        try:
            for name, content in self.files.items():
                (folder / name).write_bytes(content)
            classifier = Classifier(load_model(folder, lambda: self.labels), name=f"spark:{self.fingerprint}")
            if classifier.calibration is None and self.calibration is not None:
                classifier.calibrate_with(self.calibration)  # the driver's temperature: the same probabilities
            return classifier
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@dataclass(frozen=True)
class _CodeBatches:
    """The `mapInArrow` function: each Arrow batch back with the coding columns appended, in the declared types."""

    model: ShippedModel
    text_column: str
    top_k: int
    calibrator: Any  # a ConformalCalibrator, or None
    suffix: str
    coded_schema_json: str  # the Spark struct of the coding columns

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import polars as pl
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark.sql.pandas.types import to_arrow_schema
        from pyspark.sql.types import StructType

        classifier = self.model.classifier()
        coded_struct = StructType.fromJson(json.loads(self.coded_schema_json))
        for batch in batches:
            if not batch.num_rows:
                continue
            text = batch.column(batch.schema.get_field_index(self.text_column))
            large = pa.types.is_large_string(text.type)  # answer in the string layout Spark sent
            target = to_arrow_schema(coded_struct, prefers_large_types=large)
            texts = pc.fill_null(text.cast(pa.large_string()), "").to_pylist()
            coded = pl.DataFrame(code_chunk(classifier, texts, self.top_k, self.calibrator).coded_columns(self.suffix))
            columns = coded.to_arrow().cast(target)
            yield pa.RecordBatch.from_arrays([*batch.columns, *(column.combine_chunks() for column in columns.columns)],
                                             names=[*batch.schema.names, *target.names])


def _calibrator(classifier: Classifier, coverage: float) -> Any:
    """The prediction sets' calibrator, on the driver as the command line does (the model's calibration)."""
    from nace_app.review.calibration import calibration_of

    return calibration_of(classifier).calibrator(coverage)


def check_text_column(df: Any, text_column: str) -> None:
    """The column exists and holds strings (as `data.tables.check_text_column` for files)."""
    from pyspark.sql.types import NullType, StringType

    if text_column not in df.columns:
        raise NaceAppError(f"no column {text_column!r} in the input (columns: {', '.join(df.columns)})")
    kind = df.schema[text_column].dataType
    if not isinstance(kind, StringType | NullType):
        raise NaceAppError(f"column {text_column!r} holds {kind.simpleString()} values, not text")


@dataclass(frozen=True)
class SparkCoding:
    """An opened model ready to code Spark DataFrames: see `prepare_coding`."""

    classifier: Classifier
    model: ShippedModel
    top_k: int
    calibrator: Any  # a ConformalCalibrator, or None

    def apply(self, df: Any, text_column: str) -> Any:
        """`df` with every column kept, then the coding columns (suffixed `_nace` if an input column is so named)."""
        from pyspark.sql.types import StructField, StructType

        check_text_column(df, text_column)
        suffix = name_suffix(df.columns, CODED_COLUMNS)
        coded_struct = _coded_struct(self.classifier, self.top_k, self.calibrator, suffix)
        function = _CodeBatches(self.model, text_column, self.top_k, self.calibrator, suffix, coded_struct.json())
        fields = [*df.schema.fields, *(StructField(f.name, f.dataType, True) for f in coded_struct.fields)]
        return df.mapInArrow(function, StructType(fields))


def prepare_coding(model_uri: str | None = None, *, top_k: int = 5, coverage: float | None = None,
                   settings: Settings | None = None) -> SparkCoding:
    """The model opened on the driver (None: the configured one, with its fallback rule), top-k checked, the
    prediction sets calibrated: every mistake raises `NaceAppError` here, before any Spark job or session."""
    settings = settings or load_settings()
    from nace_app.review.calibration import runtime_calibration

    opened = open_model(model_uri, settings, calibrate=runtime_calibration(settings.cache_dir))
    classifier = opened.classifier
    classifier.check_top_k(top_k)
    calibrator = None if coverage is None else _calibrator(classifier, coverage)
    return SparkCoding(classifier, ShippedModel.of(classifier, opened.source.local_path), top_k, calibrator)


def code_spark_frame(df: Any, text_column: str, model_uri: str | None = None, *, top_k: int = 5,
                     coverage: float | None = None, settings: Settings | None = None) -> Any:
    """`df` with every column kept, then the single-process command line's coding columns.

    `model_uri`: any model URI the app takes. A bad URI, column, top-k or coverage raises `NaceAppError` before any
    Spark job starts; nothing runs until the result is written or collected. Blank or missing texts are rows left
    not coded (empty coding columns).
    """
    return prepare_coding(model_uri, top_k=top_k, coverage=coverage, settings=settings).apply(df, text_column)


def _coded_struct(classifier: Classifier, top_k: int, calibrator: Any, suffix: str) -> Any:
    """The Spark types of the coding columns, read off one coded row: they follow `coded_columns` wherever it goes."""
    import polars as pl
    from pyspark.sql.pandas.types import from_arrow_schema

    chunk = code_chunk(classifier, ["x"], top_k, calibrator)
    return from_arrow_schema(pl.DataFrame(chunk.coded_columns(suffix)).to_arrow().schema)

