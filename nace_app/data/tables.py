"""Labelled data: reading tables, checking the schema, and the reference notebook's train/validation/test split."""

from __future__ import annotations

import codecs
import csv
import io
import math
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from nace_app.nomenclature.structure import load_nomenclature
from nace_app.settings.errors import NaceAppError, first_line

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


UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def has_utf16_bom(sample: bytes) -> bool:
    """Excel's "Unicode text" and Windows tools write UTF-16 with a byte-order mark: text, although full of NULs."""
    return sample.startswith(UTF16_BOMS)


def decode_text(raw: bytes) -> str:
    """UTF-16 when it starts with its byte-order mark, else UTF-8 (with or without BOM), else latin-1, which never
    fails."""
    if has_utf16_bom(raw):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise NaceAppError(f"the file starts as UTF-16 but is not valid UTF-16 (byte {exc.start:,})") from exc
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


def looks_binary(sample: bytes) -> bool:
    """A NUL byte, or a third of control bytes, in the first 8 KB: an image, an archive, a spreadsheet.

    A few escape sequences in a short text are still text (they are shown escaped); UTF-16 with its byte-order mark
    is text too.
    """
    if has_utf16_bom(sample):
        return False
    head = sample[:8192]
    if b"\x00" in head:
        return True
    controls = sum(b < 0x20 and b not in b"\t\n\r\f\v" for b in head) + head.count(0x7F)
    return len(head) >= 512 and controls / len(head) > 0.3


def csv_error_line(lines: Iterable[str], separator: str) -> int | None:
    """The line where the first malformed record starts (bad quoting, more fields than the header), if any.

    Polars says what is wrong but not where: this second, slower reading is only done once a read has failed.
    """
    reader = csv.reader(lines, delimiter=separator, strict=True)
    start, width = 1, None
    try:
        for row in reader:
            if width is None:
                width = len(row)
            elif len(row) > width:
                return start
            start = reader.line_num + 1
    except csv.Error:
        return start
    return None


def _csv_error(name: str, exc: pl.exceptions.PolarsError, lines: Iterable[str], separator: str) -> NaceAppError:
    line = csv_error_line(lines, separator)
    where = f" at line {line}" if line is not None else ""
    return NaceAppError(f"cannot read {name}{where}: {first_line(exc)}")


def read_csv_bytes(raw: bytes) -> pl.DataFrame:
    text = decode_text(raw)
    if not text.strip():
        raise NaceAppError("the file is empty")
    separator = sniff_separator(text)
    try:
        return pl.read_csv(io.StringIO(text), separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise _csv_error("the CSV file", exc, io.StringIO(text, newline=""), separator) from exc


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


def _train_test_split(frame: pl.DataFrame, test_size: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """scikit-learn's `train_test_split(frame, test_size=…, random_state=seed)`, row for row (a test holds them
    equal), without importing scikit-learn: seconds of start-up for one permutation."""
    n_test = math.ceil(test_size * frame.height)
    permutation = np.random.RandomState(seed).permutation(frame.height)
    return frame[permutation[n_test:]], frame[permutation[:n_test]]


def split(frame: pl.DataFrame) -> Splits:
    if frame.height < 4:
        raise NaceAppError(f"the data has {frame.height} rows: too few to split into train, validation and test")
    train, rest = _train_test_split(frame, 0.30, SPLIT_SEED)
    validation, test = _train_test_split(rest, 0.50, SPLIT_SEED)
    return Splits(train=train, validation=validation, test=test, data_fingerprint=fingerprint(frame))


def fingerprint(frame: pl.DataFrame) -> str:
    """Identifies a labelled dataset (its rows, in order): models record it, caches are keyed by it."""
    import hashlib

    digest = hashlib.sha256(str(frame.height).encode())
    row_hashes = frame.select(pl.concat_str("code", "label", separator="\t").hash(seed=0)).to_series()
    digest.update(row_hashes.to_numpy().tobytes())
    return digest.hexdigest()[:16]


def stratified_sample(frame: pl.DataFrame, size: int, seed: int = SPLIT_SEED) -> pl.DataFrame:
    """`size` rows keeping class proportions, drawn at random within each class (seeded), in the frame's order.

    When there are no more classes than rows, every class keeps one row; the rest is shared in proportion to each
    class's other rows, by largest remainders (ties drawn at random), so each class gets its exact share rounded
    up or down. Written with polars rather than scikit-learn, whose import alone cost a training run 3 CPU-s.
    """
    if size >= frame.height:
        return frame
    classes = frame.group_by("code").len().sort("code")
    rows = classes["len"].to_numpy().astype(np.int64)
    quota = np.ones_like(rows) if size >= len(rows) else np.zeros_like(rows)
    share = (size - quota.sum()) * (rows - quota) / (rows - quota).sum()
    quota += np.floor(share).astype(np.int64)
    remainder = share - np.floor(share)
    largest_first = np.lexsort((np.random.default_rng(seed).random(len(rows)), -remainder))
    quota[largest_first[: size - quota.sum()]] += 1
    rank = pl.int_range(pl.len()).shuffle(seed=seed).over("code")
    return frame.filter(rank < pl.col("code").replace_strict(classes["code"], pl.Series(quota), return_dtype=pl.Int64))


TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum, pl.Null)  # Null: a column with no value at all
INPUT_TYPES = (".txt", ".csv", ".tsv", ".parquet")


def check_text_column(schema: pl.Schema, column: str) -> None:
    """The column exists and holds text: numbers, lists or bytes would be coded as their printed form."""
    if column not in schema:
        raise NaceAppError(f"no column {column!r} in the input (columns: {', '.join(schema)})")
    if schema[column] not in TEXT_TYPES:
        raise NaceAppError(f"column {column!r} holds {schema[column]} values, not text")


def numbers_only(values: pl.Series) -> bool:
    """Whether every filled value of a column read as text is a number (an id, an amount): no description to code.

    A CSV read without type inference holds numbers as text; `check_text_column` cannot see them, this can.
    """
    stripped = values.cast(pl.String).str.strip_chars().drop_nulls()
    filled = stripped.filter(stripped != "")
    return filled.len() > 0 and filled.str.replace_all(r"[\s,]", "").cast(pl.Float64, strict=False).is_not_null().all()


def texts_column(frame: pl.DataFrame, column: str) -> list[str]:
    check_text_column(frame.schema, column)
    return ["" if v is None else v for v in frame[column].cast(pl.String).to_list()]


@dataclass(frozen=True)
class TextSource:
    """An input file's rows, read in chunks in file order; a missing value or blank line reads as ''.

    `total` rows in all, `filled` of them not blank. From `open_texts`, valid only inside its `with` block.
    """

    name: str
    total: int
    filled: int
    scan: pl.LazyFrame | None  # .csv and .parquet: every column of the input
    lines: Path | None = None  # .txt: one text per line
    encoding: str = "utf-8-sig"
    read_from: Path | None = None  # .csv: the file scanned (a UTF-8 copy of a latin-1 file)
    column: str = "text"  # the text column of `scan` (a .txt's rows have only `text`)

    def frames(self, rows: int) -> Iterator[pl.DataFrame]:
        """The input's rows with every column, about `rows` at a time (exactly `rows` for a .txt), in file order."""
        if self.scan is not None:
            try:
                yield from self.scan.collect_batches(chunk_size=rows)
            except pl.exceptions.PolarsError as exc:  # damage past what was checked when it was opened
                raise NaceAppError(f"cannot read {self.name}: {first_line(exc)}") from exc
            return
        chunk: list[str] = []
        with self.lines.open(encoding=self.encoding) as lines:
            for line in lines:
                chunk.append(line.strip())
                if len(chunk) == rows:
                    yield pl.DataFrame({"text": chunk}, schema={"text": pl.String})
                    chunk = []
        if chunk:
            yield pl.DataFrame({"text": chunk}, schema={"text": pl.String})

    def texts(self, frame: pl.DataFrame) -> list[str]:
        """The texts of rows from `frames`, '' for a missing value."""
        return ["" if v is None else v for v in frame[self.column].cast(pl.String).to_list()]

    def rows_of(self, texts: list[str]) -> pl.DataFrame:
        """Rows in the input's columns holding only `texts` (the other columns empty): for texts from elsewhere."""
        schema = self.scan.collect_schema() if self.scan is not None else pl.Schema({"text": pl.String})
        return pl.DataFrame(schema=schema).clear(len(texts)).with_columns(pl.Series(self.column, texts, dtype=pl.String))

    def chunks(self, rows: int) -> Iterator[list[str]]:
        """Lists of about `rows` texts (exactly `rows` for a .txt), in file order."""
        for frame in self.frames(rows):
            yield self.texts(frame)


def _encoding_of(path: Path) -> str:
    """utf-16 after its byte-order mark, utf-8-sig when the whole file decodes as UTF-8, else latin-1 (as
    `decode_text`), read 1 MB at a time."""
    with path.open("rb") as raw:
        if has_utf16_bom(raw.read(2)):
            return "utf-16"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as raw:
            while block := raw.read(1 << 20):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8-sig"


def _check_csv(path: Path, encoding: str, separator: str) -> None:
    """Polars' scan skips over extra fields and says nothing: the strict csv module finds them, with their line."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # one description may be long
    with path.open(encoding=encoding, newline="") as lines:
        line = csv_error_line(lines, separator)
    if line is not None:
        raise NaceAppError(f"cannot read {path.name}: line {line} is malformed (a stray quote, or more fields than "
                           "the header)")


def _count(name: str, scan: pl.LazyFrame, column: str) -> tuple[int, int]:
    text = pl.col(column).cast(pl.String)
    try:
        counts = scan.select(pl.len(), (text.str.strip_chars() != "").sum()).collect().row(0)
    except pl.exceptions.PolarsError as exc:
        raise NaceAppError(f"cannot read {name}: {first_line(exc)}") from exc
    return int(counts[0]), int(counts[1] or 0)


@contextmanager
def open_texts(path: Path, column: str) -> Iterator[TextSource]:
    """A .txt (one text per line, blank lines kept as rows), .csv/.tsv or .parquet input, checked before any coding.

    A latin-1 or UTF-16 CSV is read through a UTF-8 copy in a temporary folder, removed on leaving the block.
    """
    name = path.name
    if path.is_dir():
        raise NaceAppError(f"{path} is a directory: give one .txt, .csv or .parquet file")
    if not path.is_file():
        raise NaceAppError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in INPUT_TYPES:
        raise NaceAppError(f"unsupported input type {path.suffix!r}: use .txt, .csv or .parquet")
    if suffix == ".parquet":
        scan = pl.scan_parquet(path)
        try:
            schema = scan.collect_schema()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise NaceAppError(f"cannot read {name}: {first_line(exc)}") from exc
        check_text_column(schema, column)
        yield _source(name, scan, column, f"{name} has no rows")
        return
    try:
        with path.open("rb") as raw:
            sample = raw.read(1 << 16)
    except OSError as exc:
        raise NaceAppError(f"cannot read {name}: {first_line(exc)}") from exc
    if not sample or (suffix != ".txt" and not sample.strip()):  # a .txt of blank lines has rows, but no text
        raise NaceAppError(f"{name} is empty")
    if looks_binary(sample):
        raise NaceAppError(f"{name} looks like a binary file, not text")
    encoding = _encoding_of(path)
    if suffix == ".txt":
        with path.open(encoding=encoding) as lines:
            total = filled = 0
            for line in lines:
                total, filled = total + 1, filled + bool(line.strip())
        if not filled:
            raise NaceAppError(f"{name} has no text: every line is blank")
        yield TextSource(name, total, filled, None, path, encoding)
        return
    separator = sniff_separator(decode_text(sample))
    _check_csv(path, encoding, separator)
    with tempfile.TemporaryDirectory(prefix="nace-input-") as folder:
        if encoding != "utf-8-sig":  # polars reads UTF-8 only
            utf8 = Path(folder) / name
            with path.open(encoding=encoding, newline="") as source, utf8.open("w", encoding="utf-8", newline="") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
            path = utf8
        scan = pl.scan_csv(path, separator=separator, infer_schema=False)
        try:
            schema = scan.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise NaceAppError(f"cannot read {name}: {first_line(exc)}") from exc
        check_text_column(schema, column)
        yield _source(name, scan, column, f"{name} has a header but no rows", path)


def _source(name: str, scan: pl.LazyFrame, column: str, no_rows: str, read_from: Path | None = None) -> TextSource:
    total, filled = _count(name, scan, column)
    if total == 0:
        raise NaceAppError(no_rows)
    if not filled:
        raise NaceAppError(f"{name} has no text: the text column is empty in every row")
    return TextSource(name, total, filled, scan, read_from=read_from, column=column)



@dataclass(frozen=True)
class TableSource:
    """A .csv or .parquet file read with every column, in chunks of rows, in file order (CSV columns stay text).

    From `open_table`, valid only inside its `with` block.
    """

    name: str
    total: int
    scan: pl.LazyFrame

    def chunks(self, rows: int) -> Iterator[pl.DataFrame]:
        try:
            yield from self.scan.collect_batches(chunk_size=rows)
        except pl.exceptions.PolarsError as exc:  # damage past what was checked when it was opened
            raise NaceAppError(f"cannot read {self.name}: {first_line(exc)}") from exc


@contextmanager
def open_table(path: Path, required: Iterable[str]) -> Iterator[TableSource]:
    """A .csv/.tsv (UTF-8 or latin-1) or .parquet file with the `required` columns, every column kept, checked first.

    `open_texts` runs the checks (and makes the UTF-8 copy of a latin-1 CSV, whose folder lives as long as the block).
    """
    required = list(required)
    if path.suffix.lower() not in (".csv", ".tsv", ".parquet"):
        raise NaceAppError(f"unsupported input type {path.suffix!r}: use .csv or .parquet")
    with open_texts(path, required[0]) as texts:
        if path.suffix.lower() == ".parquet":
            scan = pl.scan_parquet(path)
        else:
            with path.open("rb") as raw:
                separator = sniff_separator(decode_text(raw.read(1 << 16)))
            scan = pl.scan_csv(texts.read_from or path, separator=separator, infer_schema=False)
        schema = scan.collect_schema()
        missing = [column for column in required if column not in schema]
        if missing:
            raise NaceAppError(f"no column {missing[0]!r} in the input (columns: {', '.join(schema)})")
        yield TableSource(texts.name, texts.total, scan)
