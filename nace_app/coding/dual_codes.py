"""Dual coding: the NACE Rev 2 classes beside each Rev 2.1 code of a coded table, for series not yet switched."""

from __future__ import annotations

import re

import polars as pl

from nace_app.nomenclature.correspondence import load_correspondence, rev2_cell

_CODE_COLUMN = re.compile(r"^code_([0-9]+)(.*)$")


def rev2_columns(columns: dict[str, pl.Series], as_text: bool) -> dict[str, pl.Series]:
    """`rev2_codes_i` for every `code_i` column (with its suffix): the Rev 2 codes as a list, or as text for a
    spreadsheet (codes joined by spaces, or the words saying a class has no Rev 2 link); empty where not coded."""
    correspondence = load_correspondence()
    added = {}
    for name, codes in columns.items():
        match = _CODE_COLUMN.match(name)
        if not match:
            continue
        values = [None if code is None else correspondence.rev2_codes(code) for code in codes.to_list()]
        added[f"rev2_codes_{match[1]}{match[2]}"] = (
            pl.Series([None if v is None else rev2_cell(v) for v in values], dtype=pl.String) if as_text
            else pl.Series(values, dtype=pl.List(pl.String)))
    return added
