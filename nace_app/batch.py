"""Coding many descriptions at once: uploaded files in, a flat table of top-k codes out."""

from __future__ import annotations

import io

import polars as pl

from nace_app.classifier import Classifier
from nace_app.data import decode_text, read_csv_bytes
from nace_app.errors import NaceAppError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def read_upload(name: str, raw: bytes) -> pl.DataFrame:
    """A CSV (any of , ; tab separators, UTF-8 with or without BOM, or latin-1) or a TXT with one text per line."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise NaceAppError(f"{name} is {len(raw) / 1e6:.1f} MB: the limit is 20 MB")
    if name.lower().endswith(".txt"):
        lines = [line.strip() for line in decode_text(raw).splitlines()]
        texts = [line for line in lines if line]
        if not texts:
            raise NaceAppError(f"{name} has no text")
        return pl.DataFrame({"text": texts})
    frame = read_csv_bytes(raw)
    if frame.height == 0:
        raise NaceAppError(f"{name} has a header but no rows")
    return frame


def guess_text_column(frame: pl.DataFrame) -> str:
    for name in ("label", "text", "description", "libelle"):
        if name in frame.columns:
            return name
    strings = [c for c, t in frame.schema.items() if t == pl.String]
    if not strings:
        return frame.columns[0]
    return max(strings, key=lambda c: frame[c].cast(pl.String).str.len_chars().mean() or 0)


def code_texts(classifier: Classifier, texts: list[str], top_k: int = 3, progress=None) -> pl.DataFrame:
    top_k = min(top_k, classifier.num_classes)
    return classifier.predict_top_k(texts, top_k=top_k, chunk_size=256, progress=progress).frame()


def to_csv_bytes(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode("utf-8")


def to_parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()
