"""Coding many descriptions at once: every input row comes back, in order, with its codes and a verdict.

Outputs are made for the spreadsheet a statistician opens them in: the CSV is UTF-8 with a byte-order mark and
the input's own separator, probabilities are rounded, codes are quoted; the .xlsx keeps codes as text cells
(Excel would read the CSV's 01.11 as the number 1.11).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import polars as pl

from nace_app.classifier import Classifier
from nace_app.data import decode_text, read_csv_bytes, sniff_separator
from nace_app.errors import NaceAppError
from nace_app.metrics import CONFIDENCE_INDEX, TOP1_PROBABILITY
from nace_app.predicting import MAX_CHARS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DECIMALS = 4
NOT_CODED = "not coded (empty)"
SCORE_COLUMNS = {TOP1_PROBABILITY: "top1_probability", CONFIDENCE_INDEX: "confidence_index"}


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
    if b"\x00" in raw[:8192]:
        raise NaceAppError(f"{name} looks like a binary file, not text")
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
    ours = ("code_", "heading_", "probability_", "verdict", *SCORE_COLUMNS.values())
    suffix = "_nace" if any(c.startswith(ours) for c in frame.columns) else ""  # never overwrite an input column
    columns: dict[str, pl.Series] = {}
    for rank in range(top_k):
        codes = np.full(len(texts), None, dtype=object)
        headings = np.full(len(texts), None, dtype=object)
        probabilities = np.full(len(texts), np.nan)
        codes[rows], headings[rows] = top.codes[:, rank], top.headings[:, rank]
        probabilities[rows] = np.round(top.probabilities[:, rank], DECIMALS)
        columns[f"code_{rank + 1}{suffix}"] = pl.Series(codes.tolist(), dtype=pl.String)
        columns[f"heading_{rank + 1}{suffix}"] = pl.Series(headings.tolist(), dtype=pl.String)
        columns[f"probability_{rank + 1}{suffix}"] = pl.Series(probabilities).fill_nan(None)
    score = np.full(len(texts), np.nan)
    if len(rows):
        top_frame = top.frame()
        score[rows] = (top_frame["confidence_index"].to_numpy() if score_name == CONFIDENCE_INDEX
                       else top.probabilities[:, 0])
    verdicts = np.where(~filled, NOT_CODED, np.where(score >= threshold, "automatic", "manual review"))
    columns[f"{SCORE_COLUMNS[score_name]}{suffix}"] = pl.Series(np.round(score, DECIMALS)).fill_nan(None)
    columns[f"verdict{suffix}"] = pl.Series(verdicts.tolist(), dtype=pl.String)
    return frame.with_columns(**columns)


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
