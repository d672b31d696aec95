"""Coding many descriptions at once: every input row comes back, in order, with its codes and a verdict.

Outputs are made for the spreadsheet a statistician opens them in: the CSV is UTF-8 with a byte-order mark and
the input's own separator, probabilities are rounded, codes are quoted; the .xlsx keeps codes as text cells
(Excel would read the CSV's 01.11 as the number 1.11).

The command line codes files of any length a chunk at a time (`code_chunk`), writing each chunk as it is coded
(`write_coded`): memory stays bounded by the chunk, not the file. The page does the same with an upload of at most
`MAX_PAGE_ROWS` rows (`code_upload`): chunks of `PAGE_CHUNK_ROWS` rows appended to a parquet file in the cache
folder, the preview read from its head, each download built from it when clicked (`CodedFile`).
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from nace_app.coding.dual_codes import rev2_columns
from nace_app.coding.follow_up import FollowUp, follow_up
from nace_app.coding.predicting import MAX_CHARS, UNKNOWN_WARNING_SHARE
from nace_app.data.tables import decode_text, looks_binary, read_csv_bytes, sniff_separator
from nace_app.model.classifier import Classifier, TopK
from nace_app.model.ranking import confidence_index
from nace_app.nomenclature.correspondence import NO_REV2_LINK, load_correspondence
from nace_app.review.metrics import CONFIDENCE_INDEX, TOP1_PROBABILITY
from nace_app.settings.cachefiles import write_atomically
from nace_app.settings.errors import NaceAppError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PAGE_ROWS = 200_000  # rows per upload on the page; the command line and Spark code files of any length
PAGE_CHUNK_ROWS = 5_000
EXCEL_MAX_ROWS, EXCEL_MAX_COLUMNS = 1_048_576, 16_384  # one worksheet's limits
STALE_RESULT_SECONDS = 24 * 3600  # coded uploads older than this are removed when another is coded
DECIMALS = 4
NOT_CODED = "not coded (empty)"
SCORE_COLUMNS = {TOP1_PROBABILITY: "top1_probability", CONFIDENCE_INDEX: "confidence_index"}
CODED_COLUMNS = ("code_", "heading_", "probability_", "rev2_codes_", "confidence_index", "prediction_set",
                 "follow_up")  # what a coded file adds


@dataclass(frozen=True)
class Upload:
    frame: pl.DataFrame
    separator: str


def read_upload(name: str, raw: bytes) -> Upload:
    """A CSV (any of , ; tab separators, UTF-8 with or without BOM, or latin-1) or a TXT with one text per line.

    A TXT keeps its blank lines as rows, so that output row i is input line i.
    """
    if len(raw) > MAX_UPLOAD_BYTES:
        raise NaceAppError(f"{name} is {len(raw) / 1e6:.1f} MB: the limit is 20 MB")
    if looks_binary(raw):
        raise NaceAppError(f"{name} looks like a binary file, not text")
    lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
    rows = lines if name.lower().endswith(".txt") else lines - 1
    if rows > MAX_PAGE_ROWS:
        raise NaceAppError(f"{name} has about {rows:,} rows: the page codes at most {MAX_PAGE_ROWS:,} per file. For more, "
                           f"use the command line (nace-app predict --input {name} --output coded.parquet) or Spark")
    if name.lower().endswith(".txt"):
        lines = decode_text(raw).splitlines()
        if not any(line.strip() for line in lines):
            raise NaceAppError(f"{name} has no text")
        return Upload(pl.DataFrame({"text": lines}, schema={"text": pl.String}), ",")
    frame = read_csv_bytes(raw)
    if frame.height == 0:
        raise NaceAppError(f"{name} has a header but no rows")
    return Upload(frame, sniff_separator(decode_text(raw)))


def guess_text_column(frame: pl.DataFrame) -> str:
    for name in ("label", "text", "description", "libelle"):
        if name in frame.columns:
            return name
    strings = [c for c, t in frame.schema.items() if t == pl.String]
    if not strings:
        return frame.columns[0]
    return max(strings, key=lambda c: frame[c].cast(pl.String).str.len_chars().mean() or 0)


def code_frame(classifier: Classifier, frame: pl.DataFrame, column: str, top_k: int, score_name: str,
               threshold: float, progress=None) -> pl.DataFrame:
    """The input frame, every column kept, plus code/heading/probability per rank, the score and the verdict.

    Empty or blank descriptions are not coded: their code columns stay empty and their verdict says why.
    """
    if column not in frame.columns:
        raise NaceAppError(f"no column {column!r} in the file")
    texts = ["" if v is None else str(v)[:MAX_CHARS] for v in frame[column].cast(pl.String).to_list()]
    filled = np.array([bool(t.strip()) for t in texts])
    top_k = min(top_k, classifier.num_classes)
    rows = np.flatnonzero(filled)
    top = classifier.predict_top_k([texts[i] for i in rows], top_k=top_k, chunk_size=256, progress=progress)
    suffix = name_suffix(frame.columns, (*CODED_COLUMNS, "verdict", *SCORE_COLUMNS.values()))
    columns = ranked_columns(top, filled, DECIMALS, suffix)
    columns.update(rev2_columns(columns, as_text=True))
    score = np.full(len(texts), np.nan)
    if len(rows):
        top_frame = top.frame()
        score[rows] = (top_frame["confidence_index"].to_numpy() if score_name == CONFIDENCE_INDEX
                       else top.probabilities[:, 0])
    verdicts = np.where(~filled, NOT_CODED, np.where(score >= threshold, "automatic", "manual review"))
    columns[f"{SCORE_COLUMNS[score_name]}{suffix}"] = pl.Series(np.round(score, DECIMALS)).fill_nan(None)
    columns[f"verdict{suffix}"] = pl.Series(verdicts.tolist(), dtype=pl.String)
    return frame.with_columns(**columns)


@dataclass(frozen=True)
class CodedFile:
    """A coded upload on disk (parquet, one row group a chunk): the page previews its head and builds each download
    from it when asked, so that no whole table stays in the server's memory."""

    path: Path
    rows: int
    columns: int

    def head(self, rows: int = 200) -> pl.DataFrame:
        return pl.read_parquet(self.path, n_rows=rows)

    def csv_bytes(self, separator: str = ",") -> bytes:
        """As `to_csv_bytes`, a row group at a time."""
        import pyarrow.parquet as pq

        out = io.BytesIO()
        out.write(b"\xef\xbb\xbf")
        with pq.ParquetFile(self.path) as parquet:
            for group in range(parquet.num_row_groups):
                frame = pl.from_arrow(parquet.read_row_group(group))
                frame.write_csv(out, separator=separator, quote_style="non_numeric", include_header=group == 0)
        return out.getvalue()

    def parquet_bytes(self) -> bytes:
        return self.path.read_bytes()

    @property
    def xlsx_refusal(self) -> str | None:
        """Why the table does not fit one Excel worksheet, or None."""
        if self.columns > EXCEL_MAX_COLUMNS:
            return f"Excel is not offered: the table has {self.columns:,} columns, a worksheet holds {EXCEL_MAX_COLUMNS:,}."
        if self.rows >= EXCEL_MAX_ROWS:
            return f"Excel is not offered: the table has {self.rows:,} rows, a worksheet holds {EXCEL_MAX_ROWS - 1:,}."
        return None

    def xlsx_bytes(self) -> bytes:
        return to_xlsx_bytes(pl.read_parquet(self.path))


def code_upload(classifier: Classifier, frame: pl.DataFrame, column: str, top_k: int, score_name: str,
                threshold: float, folder: Path, progress: Callable[[int, int], None] | None = None) -> CodedFile:
    """`code_frame` a chunk of `PAGE_CHUNK_ROWS` rows at a time, each chunk appended to a parquet file in `folder`."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        try:
            if time.time() - old.stat().st_mtime > STALE_RESULT_SECONDS:
                old.unlink()
        except OSError:  # removed by another session meanwhile
            pass
    path = folder / f"{secrets.token_hex(12)}.parquet"

    def write(out: BinaryIO) -> None:
        writer = None
        for start in range(0, frame.height, PAGE_CHUNK_ROWS):
            def chunk_progress(done: int, total: int, start: int = start) -> None:
                if progress is not None:
                    progress(start + done, frame.height)

            table = code_frame(classifier, frame.slice(start, PAGE_CHUNK_ROWS), column, top_k, score_name, threshold,
                               progress=chunk_progress).to_arrow()
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()

    try:
        write_atomically(path, write)
    except OSError as exc:
        raise NaceAppError(f"cannot store the coded file in the cache folder: {exc.strerror or exc}") from exc
    columns = len(pq.read_schema(path).names)
    return CodedFile(path, frame.height, columns)


def name_suffix(input_columns: Iterable[str], ours: tuple[str, ...] = CODED_COLUMNS) -> str:
    """'_nace' when an input column starts like one of `ours`, else '': coding columns never overwrite input ones."""
    return "_nace" if any(c.startswith(ours) for c in input_columns) else ""


def ranked_columns(top: TopK, filled: np.ndarray, decimals: int | None = DECIMALS, suffix: str = "") -> dict[str, pl.Series]:
    """code_i, heading_i and probability_i of each rank for every row; empty where `filled` is False (not coded)."""
    rows = np.flatnonzero(filled)
    columns: dict[str, pl.Series] = {}
    for rank in range(top.codes.shape[1]):
        codes = np.full(len(filled), None, dtype=object)
        headings = np.full(len(filled), None, dtype=object)
        probabilities = np.full(len(filled), np.nan)
        codes[rows], headings[rows] = top.codes[:, rank], top.headings[:, rank]
        probabilities[rows] = top.probabilities[:, rank] if decimals is None else np.round(top.probabilities[:, rank], decimals)
        columns[f"code_{rank + 1}{suffix}"] = pl.Series(codes.tolist(), dtype=pl.String)
        columns[f"heading_{rank + 1}{suffix}"] = pl.Series(headings.tolist(), dtype=pl.String)
        columns[f"probability_{rank + 1}{suffix}"] = pl.Series(probabilities, dtype=pl.Float64).fill_nan(None)
    return columns


# --- the command line's streamed coding: a chunk of rows at a time, written as it is coded -------------------------


@dataclass
class CodedChunk:
    """Consecutive input rows with their codes; blank rows keep their place, not coded.

    Per coded (`filled`) row, in order: `top`, and when asked for `sets` (the prediction set's codes) with
    `follow_ups` (the question for a set of 2+ codes, else None), `read_until` (where a fixed-window model stopped
    reading, or None) and `explanations` (one per top code). `rev2` adds each code's Rev 2 classes.
    `mostly_unknown` marks the coded rows most of whose words the model does not know. `inputs`, when given,
    are the chunk's input rows with every column: a coded table keeps them (identifiers to join back on).
    """

    texts: list[str]
    filled: np.ndarray
    top: TopK
    mostly_unknown: np.ndarray
    sets: list[list[str]] | None = None
    read_until: list[int | None] | None = None
    explanations: list[list[Any]] | None = None
    follow_ups: list[FollowUp | None] | None = None
    rev2: bool = False
    inputs: pl.DataFrame | None = None

    def rows(self) -> list[dict[str, Any]]:
        """JSON rows: `{"text", "predictions": [{"code", "heading", "probability"}...]}` plus, when computed,
        `"prediction_set": [codes]`, `"follow_up"` (sets of 2+ codes), `"read_until"` (only where the model stopped
        early), each prediction's `"rev2_codes"` and explanation fields; a blank row has `"predictions": []`."""
        coded = iter(range(len(self.top.texts)))
        top_rows = self.top.rows()
        rows = []
        for text, filled in zip(self.texts, self.filled.tolist(), strict=True):
            if not filled:
                rows.append({"text": text, "predictions": [], **({"prediction_set": []} if self.sets is not None else {})})
                continue
            i = next(coded)
            row = top_rows[i]
            if self.sets is not None:
                row["prediction_set"] = self.sets[i]
            if self.follow_ups is not None and self.follow_ups[i] is not None:
                row["follow_up"] = self.follow_ups[i].to_dict()
            if self.rev2:
                add_rev2_codes(row["predictions"])
            if self.read_until is not None and self.read_until[i] is not None:
                row["read_until"] = self.read_until[i]
            if self.explanations is not None:
                for item, explanation in zip(row["predictions"], self.explanations[i], strict=True):
                    item.update(explanation.to_dict())
            rows.append(row)
        return rows

    def coded_columns(self, suffix: str = "") -> dict[str, pl.Series]:
        """code_i / heading_i / probability_i (and rev2_codes_i, lists) per rank, confidence_index, and
        prediction_set (a list) with follow_up (its JSON, where the set holds 2+ codes), when computed.

        The one definition of a coded table's columns: the command line's files and Spark's rows both come from it.
        """
        score = np.full(len(self.texts), np.nan)
        score[self.filled] = confidence_index(self.top.probabilities)
        columns = ranked_columns(self.top, self.filled, None, suffix)
        if self.rev2:
            columns.update(rev2_columns(columns, as_text=False))
        columns[f"confidence_index{suffix}"] = pl.Series(score, dtype=pl.Float64).fill_nan(None)
        if self.sets is not None:
            sets, questions = iter(self.sets), iter(self.follow_ups or [])
            columns[f"prediction_set{suffix}"] = pl.Series([next(sets) if f else None for f in self.filled.tolist()],
                                                           dtype=pl.List(pl.String))
            asked = [next(questions) if f else None for f in self.filled.tolist()]
            columns[f"follow_up{suffix}"] = pl.Series([None if q is None else json.dumps(q.to_dict(), ensure_ascii=False)
                                                       for q in asked], dtype=pl.String)
        return columns

    def frame(self) -> pl.DataFrame:
        """The input rows (or, without them, `text`) followed by `coded_columns`."""
        if self.inputs is None:
            return pl.DataFrame({"text": pl.Series(self.texts, dtype=pl.String), **self.coded_columns()})
        return self.inputs.hstack(pl.DataFrame(self.coded_columns(name_suffix(self.inputs.columns))))


def add_rev2_codes(predictions: list[dict[str, Any]]) -> None:
    """Each JSON prediction's `"rev2_codes"`, and for a class without one (46.89) a `"rev2_note"` saying so."""
    for prediction in predictions:
        prediction["rev2_codes"] = load_correspondence().rev2_codes(prediction["code"])
        if not prediction["rev2_codes"]:
            prediction["rev2_note"] = NO_REV2_LINK


def code_chunk(classifier: Classifier, texts: list[str], top_k: int, calibrator: Any = None,
               explain: bool = False, rev2: bool = False, inputs: pl.DataFrame | None = None) -> CodedChunk:
    """Code the non-blank texts of one chunk; `calibrator` (a `ConformalCalibrator`) adds prediction sets and their
    follow-up questions; `rev2` each code's Rev 2 classes.

    `inputs`: the rows `texts` were read from, every column, kept in the chunk's `frame`.
    """
    from nace_app.model.tokenization import read_until

    filled = np.array([bool(t.strip()) for t in texts], dtype=bool)
    coded = [t for t, f in zip(texts, filled.tolist(), strict=True) if f]
    probabilities = classifier.predict_proba(coded)
    indices, values = classifier.top_k(probabilities, top_k)
    labels = np.array(classifier.labels, dtype=object)
    headings = np.array([classifier.nomenclature.heading(code) for code in classifier.labels], dtype=object)
    chunk = CodedChunk(texts, filled, TopK(coded, labels[indices], headings[indices], values),
                       np.array([classifier.unknown_token_share(t) > UNKNOWN_WARNING_SHARE for t in coded], dtype=bool),
                       rev2=rev2, inputs=inputs)
    if calibrator is not None:
        set_indices = calibrator.sets(probabilities)
        chunk.sets = [labels[row].tolist() for row in set_indices]
        chunk.follow_ups = [follow_up(classifier.nomenclature, codes, probabilities[i, row].tolist())
                            for i, (codes, row) in enumerate(zip(chunk.sets, set_indices, strict=True))]
    if classifier.tokenizer.output_dim is not None:
        chunk.read_until = [read_until(classifier.tokenizer, t) for t in coded]
    if explain:
        from nace_app.explain.class_words import explain_texts

        chunk.explanations = explain_texts(classifier, coded, chunk.top.codes.tolist())
    return chunk


OUTPUT_TYPES = (".jsonl", ".csv", ".parquet")


def write_coded(chunks: Iterable[CodedChunk], output: Path) -> None:
    """Rows appended as their chunk is coded, in input order, to a file beside `output` renamed at the end.

    .jsonl: one JSON row a line (`CodedChunk.rows`); .csv: `CodedChunk.frame` (every input column, then the
    codes) with the set's (and the Rev 2) codes joined by spaces; .parquet: the frame, one row group a chunk, the
    set as a list.
    """
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_TYPES:
        raise NaceAppError(f"unsupported output type {output.suffix!r}: use .jsonl, .csv or .parquet")

    def write(out: BinaryIO) -> None:
        import pyarrow.parquet as pq

        parquet = None
        for number, chunk in enumerate(chunks):
            if suffix == ".jsonl":
                out.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk.rows()).encode("utf-8"))
                continue
            frame = chunk.frame()
            if suffix == ".csv":  # lists (the set, the Rev 2 codes) as codes joined by spaces
                frame.with_columns(pl.col(pl.List(pl.String)).list.join(" ")).write_csv(out, include_header=number == 0)
                continue
            table = frame.to_arrow()
            parquet = parquet or pq.ParquetWriter(out, table.schema)
            parquet.write_table(table.cast(parquet.schema))  # a TEXT argument's row may type an input column apart
        if parquet is not None:
            parquet.close()

    write_atomically(output, write)


def to_csv_bytes(frame: pl.DataFrame, separator: str = ",") -> bytes:
    """UTF-8 with BOM (Excel then reads accents right), the input's separator, every text field quoted."""
    return b"\xef\xbb\xbf" + frame.write_csv(separator=separator, quote_style="non_numeric").encode("utf-8")


def to_parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def to_xlsx_bytes(frame: pl.DataFrame) -> bytes:
    """An Excel workbook: codes stay text cells, probabilities numbers."""
    buffer = io.BytesIO()
    frame.write_excel(buffer, worksheet="coded", autofit=True)
    return buffer.getvalue()
