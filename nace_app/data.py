"""Labelled data: reading tables, checking the schema, and the reference notebook's train/validation/test split."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from nace_app.errors import NaceAppError, first_line
from nace_app.nomenclature import load_nomenclature

SPLIT_SEED = 42


@dataclass(frozen=True)
class Splits:
    """The notebook's split: 70% train, then the remaining 30% halved into validation and test."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    data_fingerprint: str = ""

    def codes_missing_from_train(self) -> list[str]:
        seen = set(self.train["code"].to_list())
        return sorted({c for c in self.validation["code"].to_list() + self.test["code"].to_list() if c not in seen})

    def describe(self) -> dict[str, object]:
        return {
            "method": "train_test_split(df, test_size=0.30, random_state=42); "
            "train_test_split(rest, test_size=0.50, random_state=42)",
            "train_rows": self.train.height,
            "validation_rows": self.validation.height,
            "test_rows": self.test.height,
        }


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else latin-1, which never fails."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def sniff_separator(text: str) -> str:
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_csv_bytes(raw: bytes) -> pl.DataFrame:
    text = decode_text(raw)
    if not text.strip():
        raise NaceAppError("the file is empty")
    try:
        return pl.read_csv(io.StringIO(text), separator=sniff_separator(text), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise NaceAppError(f"cannot read the CSV file: {first_line(exc)}") from exc


def read_table(path: Path) -> pl.DataFrame:
    """A .parquet, .csv or .txt file (one text per line, column `text`), or a folder of CSV files."""
    try:
        if path.is_dir():
            parts = [read_csv_bytes(p.read_bytes()) for p in sorted(path.glob("*.csv"))]
            if not parts:
                raise NaceAppError(f"no CSV files in {path}")
            return pl.concat(parts, how="diagonal")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".txt":
            lines = [line.strip() for line in decode_text(path.read_bytes()).splitlines()]
            return pl.DataFrame({"text": [line for line in lines if line]}, schema={"text": pl.String})
        if suffix in (".csv", ".tsv"):
            return read_csv_bytes(path.read_bytes())
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise NaceAppError(f"cannot read {path.name}: {first_line(exc)}") from exc
    raise NaceAppError(f"unsupported file type {path.suffix!r}: use .parquet, .csv or .txt")


def prepare_labelled(frame: pl.DataFrame) -> pl.DataFrame:
    """Check `code` and `label`, normalise them to strings, fill `name` from the nomenclature where missing."""
    missing = [c for c in ("code", "label") if c not in frame.columns]
    if missing:
        raise NaceAppError(f"the data lacks the column(s) {', '.join(missing)} (needs code and label)")
    frame = frame.with_columns(
        pl.col("code").cast(pl.String).str.strip_chars(), pl.col("label").cast(pl.String).str.strip_chars()
    ).filter(pl.col("code").is_not_null() & pl.col("label").is_not_null() & (pl.col("label") != ""))
    if frame.height == 0:
        raise NaceAppError("the data has no labelled rows")
    nomenclature = load_nomenclature()
    headings = pl.Series([nomenclature.heading(c) for c in frame["code"].to_list()], dtype=pl.String)
    if "name" in frame.columns:
        frame = frame.with_columns(pl.col("name").cast(pl.String).fill_null(headings))
    else:
        frame = frame.with_columns(name=headings)
    return frame.select("code", "name", "label", *[c for c in frame.columns if c not in ("code", "name", "label")])


def load_labelled(path: Path) -> pl.DataFrame:
    return prepare_labelled(read_table(path))


def split(frame: pl.DataFrame) -> Splits:
    from sklearn.model_selection import train_test_split

    if frame.height < 4:
        raise NaceAppError(f"the data has {frame.height} rows: too few to split into train, validation and test")
    train, rest = train_test_split(frame, test_size=0.30, random_state=SPLIT_SEED)
    validation, test = train_test_split(rest, test_size=0.50, random_state=SPLIT_SEED)
    return Splits(train=train, validation=validation, test=test, data_fingerprint=fingerprint(frame))


def fingerprint(frame: pl.DataFrame) -> str:
    """Identifies a labelled dataset (its rows, in order): models record it, caches are keyed by it."""
    import hashlib

    digest = hashlib.sha256(str(frame.height).encode())
    row_hashes = frame.select(pl.concat_str("code", "label", separator="\t").hash(seed=0)).to_series()
    digest.update(row_hashes.to_numpy().tobytes())
    return digest.hexdigest()[:16]


def stratified_sample(frame: pl.DataFrame, size: int, seed: int = SPLIT_SEED) -> pl.DataFrame:
    """`size` rows keeping class proportions (every class keeps at least one row where it can)."""
    if size >= frame.height:
        return frame
    from sklearn.model_selection import train_test_split

    counts = frame["code"].value_counts()
    singletons = set(counts.filter(pl.col("count") < 2)["code"].to_list())
    stratifiable = frame.filter(~pl.col("code").is_in(singletons))
    n_classes = stratifiable["code"].n_unique()
    if size < n_classes or size >= stratifiable.height:
        return frame.sample(n=size, seed=seed)
    sample, _ = train_test_split(stratifiable, train_size=size, random_state=seed, stratify=stratifiable["code"])
    return sample


def texts_column(frame: pl.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        raise NaceAppError(f"no column {column!r} in the input (columns: {', '.join(frame.columns)})")
    return ["" if v is None else str(v) for v in frame[column].to_list()]
