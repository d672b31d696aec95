"""Relabelling rows coded in NACE Rev 2 into Rev 2.1: the correspondence table where it links one class, the model
restricted to the classes the table allows where it links several, and `unknown` where neither can say.

As INSEE and Eurostat's back-classification work do: the table is trusted for one-to-one links; for a Rev 2 class
split between several Rev 2.1 classes the model chooses among exactly those, its probability renormalised over
them; a row with no text (or a code outside the table) is never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from nace_app.coding.predicting import MAX_CHARS
from nace_app.model.classifier import Classifier
from nace_app.nomenclature.correspondence import Correspondence, load_correspondence
from nace_app.settings.cachefiles import write_atomically
from nace_app.settings.errors import NaceAppError

TABLE, MODEL, UNKNOWN = "table", "model", "unknown"
DEFAULT_REVIEW_BELOW = 0.8
RELABEL_COLUMNS = ("code_rev21", "relabel_method", "relabel_probability", "relabel_review", "relabel_candidates")
OUTPUT_TYPES = (".parquet", ".csv")
_DOTTED = re.compile(r"^([0-9]{1,2})\.([0-9]{2})$")
_PLAIN = re.compile(r"^([0-9]{2})([0-9]{2})$")


def normalise_rev2_code(value: Any) -> str:
    """'0113', '1.13' (a spreadsheet dropped the zero) and ' 01.13 ' all read as '01.13'; anything else unchanged."""
    text = "" if value is None else str(value).strip()
    match = _DOTTED.match(text) or _PLAIN.match(text)
    return f"{int(match[1]):02d}.{match[2]}" if match else text


def rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


@dataclass
class RelabelCounts:
    """What a relabelling did, for the summary line: rows per method, unknown codes, blank texts left unknown."""

    methods: Counter = field(default_factory=Counter)
    unknown_codes: Counter = field(default_factory=Counter)
    blank_ambiguous: int = 0
    flagged: int = 0

    def add(self, other: RelabelCounts) -> None:
        self.methods.update(other.methods)
        self.unknown_codes.update(other.unknown_codes)
        self.blank_ambiguous += other.blank_ambiguous
        self.flagged += other.flagged

    def summary(self) -> list[str]:
        """Lines for stderr or the page: the split by method, then what needs a person."""
        total = sum(self.methods.values())
        lines = [f"relabelled {total:,} rows: " + ", ".join(f"{self.methods[m]:,} by {m}" for m in (TABLE, MODEL, UNKNOWN))]
        if self.unknown_codes:
            shown = ", ".join(f"{code!r} ({n:,})" for code, n in self.unknown_codes.most_common(10))
            lines.append(f"{rows(sum(self.unknown_codes.values()))} with a code that is no NACE Rev 2 class: {shown}")
        if self.blank_ambiguous:
            lines.append(f"{rows(self.blank_ambiguous)} with a Rev 2 code split between several Rev 2.1 classes and no "
                         "text: left unknown, not guessed")
        lines.append(f"{rows(self.flagged)} flagged for review")
        return lines


@dataclass(frozen=True)
class Relabelled:
    frame: pl.DataFrame  # the input, every column kept, plus RELABEL_COLUMNS
    counts: RelabelCounts


def restricted_choice(probabilities: np.ndarray, allowed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the allowed class index the model prefers and its probability renormalised over the allowed ones."""
    allowed_probabilities = probabilities[:, allowed]
    mass = allowed_probabilities.sum(axis=1, keepdims=True)
    renormalised = np.divide(allowed_probabilities, mass, out=np.full_like(allowed_probabilities, 1 / len(allowed)),
                             where=mass > 0)
    best = renormalised.argmax(axis=1)
    return np.asarray(allowed)[best], renormalised[np.arange(len(best)), best]


def relabel_frame(classifier: Classifier, frame: pl.DataFrame, code_column: str, text_column: str,
                  review_below: float = DEFAULT_REVIEW_BELOW, correspondence: Correspondence | None = None) -> Relabelled:
    """Every row of `frame` with its Rev 2.1 code, how it was found, the model's renormalised probability, the flag."""
    for column in (code_column, text_column):
        if column not in frame.columns:
            raise NaceAppError(f"no column {column!r} in the file (columns: {', '.join(frame.columns)})")
    correspondence = correspondence or load_correspondence()
    codes = [normalise_rev2_code(v) for v in frame[code_column].cast(pl.String).to_list()]
    texts = ["" if v is None else str(v)[:MAX_CHARS] for v in frame[text_column].cast(pl.String).to_list()]
    n = len(codes)
    new_codes: list[str | None] = [None] * n
    methods = [UNKNOWN] * n
    probability = np.full(n, np.nan)
    candidates: list[str | None] = [None] * n
    counts = RelabelCounts()
    ambiguous: dict[str, list[int]] = {}
    for row, code in enumerate(codes):
        targets = correspondence.rev21_codes(code)
        if not targets:
            counts.unknown_codes[code] += 1
        elif len(targets) == 1:
            new_codes[row], methods[row] = targets[0], TABLE
        else:
            candidates[row] = " ".join(targets)
            if texts[row].strip():
                ambiguous.setdefault(code, []).append(row)
            else:
                counts.blank_ambiguous += 1
    rows = [row for group in ambiguous.values() for row in group]
    if rows:
        probabilities = classifier.predict_proba([texts[row] for row in rows])
        position = {row: i for i, row in enumerate(rows)}
        for code, group in ambiguous.items():
            allowed = [classifier.label_index[c] for c in correspondence.rev21_codes(code) if c in classifier.label_index]
            if not allowed:  # the model knows none of them: nothing to choose among
                continue
            chosen, chosen_probability = restricted_choice(probabilities[[position[row] for row in group]], allowed)
            for row, index, value in zip(group, chosen.tolist(), chosen_probability.tolist(), strict=True):
                new_codes[row], methods[row], probability[row] = classifier.labels[index], MODEL, value
    review = [method == UNKNOWN or (method == MODEL and p < review_below)
              for method, p in zip(methods, probability.tolist(), strict=True)]
    counts.methods.update(methods)
    counts.flagged = sum(review)
    suffix = "_relabel" if any(c in frame.columns for c in RELABEL_COLUMNS) else ""  # never overwrite an input column
    added = {"code_rev21": pl.Series(new_codes, dtype=pl.String),
             "relabel_method": pl.Series(methods, dtype=pl.String),
             "relabel_probability": pl.Series(np.round(probability, 4), dtype=pl.Float64).fill_nan(None),
             "relabel_review": pl.Series(review, dtype=pl.Boolean),
             "relabel_candidates": pl.Series(candidates, dtype=pl.String)}
    return Relabelled(frame.with_columns(**{f"{name}{suffix}": values for name, values in added.items()}), counts)


def relabel_file(classifier: Classifier, source: Any, output: Path, code_column: str, text_column: str,
                 review_below: float, chunk_rows: int, progress: Callable[[int], None] | None = None) -> RelabelCounts:
    """Relabel a `data.tables.TableSource` a chunk at a time into `output` (.parquet or .csv), renamed once complete."""
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_TYPES:
        raise NaceAppError(f"unsupported output type {output.suffix!r}: use .parquet or .csv")
    counts = RelabelCounts()

    def relabelled() -> Iterator[pl.DataFrame]:
        done = 0
        for chunk in source.chunks(chunk_rows):
            result = relabel_frame(classifier, chunk, code_column, text_column, review_below)
            counts.add(result.counts)
            done += chunk.height
            if progress is not None:
                progress(done)
            yield result.frame

    write_atomically(output, lambda out: _write_frames(relabelled(), out, suffix))
    return counts


def _write_frames(frames: Iterable[pl.DataFrame], out: BinaryIO, suffix: str) -> None:
    import pyarrow.parquet as pq

    parquet = None
    for number, frame in enumerate(frames):
        if suffix == ".csv":
            frame.write_csv(out, include_header=number == 0)
            continue
        table = frame.to_arrow()
        parquet = parquet or pq.ParquetWriter(out, table.schema)
        parquet.write_table(table)
    if parquet is not None:
        parquet.close()


@dataclass(frozen=True)
class RelabelAccuracy:
    """How well the restricted model relabels, on labelled Rev 2.1 rows given back the Rev 2 code they came from.

    Rows whose Rev 2.1 class links to exactly one Rev 2 class get that code; of those, `table_rows` have a Rev 2
    class linking back to one Rev 2.1 class (the table alone is right) and `rows` one linking to several (the model
    must find the known class among `mean_candidates` on average). Rows whose class draws on several Rev 2 classes
    have no single Rev 2 code: `excluded_rows`.
    """

    rows: int
    table_rows: int
    excluded_rows: int
    mean_candidates: float
    restricted_accuracy: float
    unrestricted_accuracy: float

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def relabel_accuracy(probabilities: np.ndarray, true_codes: list[str], labels: list[str],
                     correspondence: Correspondence | None = None) -> RelabelAccuracy:
    """Restricted (among the classes the table allows) versus unrestricted top-1 on the split rows it applies to."""
    correspondence = correspondence or load_correspondence()
    label_index = {code: i for i, code in enumerate(labels)}
    restricted_right, unrestricted_right, sizes, rows = [], [], [], []
    table_rows = excluded = 0
    for row, code in enumerate(true_codes):
        rev2 = correspondence.rev2_codes(code)
        if len(rev2) != 1:
            excluded += 1
            continue
        allowed_codes = correspondence.rev21_codes(rev2[0])
        if len(allowed_codes) == 1:
            table_rows += 1
            continue
        allowed = [label_index[c] for c in allowed_codes if c in label_index]
        if not allowed:
            excluded += 1
            continue
        rows.append(row)
        sizes.append(len(allowed_codes))
        chosen, _ = restricted_choice(probabilities[[row]], allowed)
        restricted_right.append(labels[int(chosen[0])] == code)
        unrestricted_right.append(labels[int(probabilities[row].argmax())] == code)
    return RelabelAccuracy(len(rows), table_rows, excluded, float(np.mean(sizes)) if sizes else 0.0,
                           float(np.mean(restricted_right)) if rows else float("nan"),
                           float(np.mean(unrestricted_right)) if rows else float("nan"))
