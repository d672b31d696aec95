"""The Streamlit adapter's plain helpers: user text inside markdown, tables without the word None."""

import re

import polars as pl
import pytest

from nace_app.app.widgets import literal, without_none

HOSTILE = ["[click](http://evil.example)", "![i](https://evil.example/i.png)", "**bold** _it_ `code` # title",
           ":red[alert] :material/error:", "<b>tag</b> &amp; www.evil.example me@evil.example", "a\\b | c ~ $x$"]


@pytest.mark.parametrize("text", HOSTILE)
def test_user_text_in_markdown_reads_as_typed_and_renders_no_markup(text):
    shown = literal(text)
    assert re.sub(r"\\(.)", r"\1", shown).replace("\u200b", "") == text  # what a reader sees
    assert re.search(r"(?<!\\)[\[\]()*_`#<>:!]", shown) is None  # every markup character is escaped
    assert not re.search(r"https?:/|www\.|@[a-z]", shown.replace("\\", ""))  # no autolink survives


def test_missing_cells_show_empty_and_full_columns_keep_their_type():
    shown = without_none(pl.DataFrame({"id": [1, 2], "code_1": ["10.71", None], "probability_1": [0.123456, None]}), 4)
    assert shown["id"].to_list() == [1, 2]
    assert shown["code_1"].to_list() == ["10.71", ""] and shown["probability_1"].to_list() == ["0.1235", ""]
