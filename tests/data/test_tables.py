import codecs
import io
import math
import tempfile
from pathlib import Path

import polars as pl
import pytest
from sklearn.model_selection import train_test_split

from nace_app.data.tables import (
    csv_error_line,
    looks_binary,
    numbers_only,
    open_texts,
    prepare_labelled,
    read_csv_bytes,
    split,
    stratified_sample,
    texts_column,
)
from nace_app.settings.errors import NaceAppError


def test_split_is_exactly_the_reference_notebooks(demo_frame):
    splits = split(demo_frame)
    train, rest = train_test_split(demo_frame, test_size=0.30, random_state=42)
    validation, test = train_test_split(rest, test_size=0.50, random_state=42)
    assert splits.train.equals(train) and splits.validation.equals(validation) and splits.test.equals(test)
    assert splits.train.height + splits.validation.height + splits.test.height == demo_frame.height


def test_codes_missing_from_train_are_reported():
    frame = prepare_labelled(pl.DataFrame({"code": ["10.71"] * 30 + ["62.10"], "label": [f"t{i}" for i in range(31)]}))
    splits = split(frame)
    missing = splits.codes_missing_from_train()
    assert missing == (["62.10"] if "62.10" not in splits.train["code"].to_list() else [])


def test_schema_requires_code_and_label_and_fills_name():
    with pytest.raises(NaceAppError, match="label"):
        prepare_labelled(pl.DataFrame({"code": ["10.71"]}))
    frame = prepare_labelled(pl.DataFrame({"code": ["10.71", "99.99"], "label": ["bread", "x"]}))
    assert frame["name"].to_list()[0].startswith("Manufacture of bread")
    assert frame["name"].to_list()[1] == "unknown code"


def test_stratified_sample_gives_every_class_one_row_then_its_share_of_the_rest_rounded(demo_frame):
    sample = stratified_sample(demo_frame, 3000)
    assert sample.height == 3000
    counts = dict(demo_frame.group_by("code").len().iter_rows())
    taken = dict(sample.group_by("code").len().iter_rows())
    assert set(taken) == set(counts)  # 651 classes, 3,000 rows: every class is kept
    rest = 3000 - len(counts)
    others = sum(counts.values()) - len(counts)
    for code, rows in counts.items():
        exact = 1 + rest * (rows - 1) / others
        assert math.floor(exact) <= taken[code] <= math.ceil(exact), code


def test_stratified_sample_is_drawn_at_random_within_classes_repeatably_and_in_the_frames_order(demo_frame):
    first, again, other = (stratified_sample(demo_frame, 2000, seed) for seed in (1, 1, 2))
    assert first.equals(again)
    assert not first.equals(other)
    position = {label: i for i, label in enumerate(demo_frame["label"].to_list())}
    assert sorted(first["label"].to_list(), key=position.get) == first["label"].to_list()
    assert first.is_duplicated().sum() == 0 and first.join(demo_frame, on=["code", "label"]).height >= 2000


def test_a_sample_smaller_than_the_class_count_goes_by_largest_remainders():
    frame = pl.DataFrame({"code": ["a"] * 6 + ["b"] * 3 + ["c"], "label": [str(i) for i in range(10)]})
    assert stratified_sample(frame, 2)["code"].to_list() == ["a", "b"]  # shares 1.2, 0.6, 0.2
    assert stratified_sample(frame, 10).equals(frame)


def test_csv_error_line_points_at_the_first_malformed_record():
    assert csv_error_line(io.StringIO("label,n\nbakery,1\nflorist,2,3\n"), ",") == 3
    assert csv_error_line(io.StringIO('label,n\nbakery,1\n"flo"rist,2\n'), ",") == 3
    assert csv_error_line(io.StringIO('label,n\n"two\nlines",1\n"unclosed,2\n'), ",") == 4
    assert csv_error_line(io.StringIO("label,n\nbakery,1\n"), ",") is None


def test_an_unreadable_csv_upload_names_its_line():
    with pytest.raises(NaceAppError, match="at line 3"):
        read_csv_bytes(b"label,n\nbakery,1\nflorist,2,3\n")


def test_binary_files_are_told_from_text_in_any_alphabet():
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") and looks_binary(bytes(range(1, 32)) * 20)
    assert not looks_binary("boulangerie café\tmخبز 🍞\r\n".encode())
    assert not looks_binary(b"red \x1b[31mbakery\x07\n")  # escape sequences in a text: shown escaped


def test_utf16_with_its_byte_order_mark_is_text_and_is_read():
    raw = "label;n\ncafé crème;1\n".encode("utf-16")
    assert not looks_binary(raw)
    assert read_csv_bytes(raw)["label"].to_list() == ["café crème"]
    big_endian = codecs.BOM_UTF16_BE + "label\nboulangerie\n".encode("utf-16-be")
    assert read_csv_bytes(big_endian)["label"].to_list() == ["boulangerie"]


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_a_utf16_input_streams_like_a_utf8_one(tmp_path, suffix):
    content = "label\ncafé crème\nboulangerie\n" if suffix == ".csv" else "café crème\nboulangerie\n"
    (tmp_path / f"in{suffix}").write_bytes(content.encode("utf-16"))
    with open_texts(tmp_path / f"in{suffix}", "label") as source:
        assert [text for chunk in source.chunks(5) for text in chunk] == ["café crème", "boulangerie"]


def test_a_column_of_numbers_read_as_text_is_told_from_descriptions():
    assert numbers_only(pl.Series(["12", " 3.5 ", "1,234", None, ""]))
    assert not numbers_only(pl.Series(["12", "bakery"]))
    assert not numbers_only(pl.Series([None, "  "]))  # an empty column: nothing says it holds numbers


def test_text_columns_must_hold_text():
    with pytest.raises(NaceAppError, match="column 'label' holds Int64 values, not text"):
        texts_column(pl.DataFrame({"label": [1, 2]}), "label")
    assert texts_column(pl.DataFrame({"label": ["bakery", None]}), "label") == ["bakery", ""]


def test_a_txt_input_streams_in_chunks_in_file_order_with_its_blank_lines(tmp_path):
    (tmp_path / "in.txt").write_text("bakery\n\n  florist \ntaxi\n")
    with open_texts(tmp_path / "in.txt", "text") as source:
        assert (source.total, source.filled) == (4, 3)
        assert list(source.chunks(3)) == [["bakery", "", "florist"], ["taxi"]]


def test_a_parquet_streams_every_column_and_reads_its_text_column(tmp_path):
    pl.DataFrame({"id": [1, 2, 3], "label": ["bakery", None, "taxi"]}).write_parquet(tmp_path / "in.parquet")
    with open_texts(tmp_path / "in.parquet", "label") as source:
        frames = list(source.frames(2))
        assert [f.columns for f in frames] == [["id", "label"], ["id", "label"]]
        assert [text for frame in frames for text in source.texts(frame)] == ["bakery", "", "taxi"]
        assert source.rows_of(["florist"]).to_dicts() == [{"id": None, "label": "florist"}]


def test_a_latin1_csv_streams_through_a_utf8_copy_that_is_removed_afterwards(tmp_path):
    (tmp_path / "in.csv").write_bytes("id;label\n1;café crème\n2;\n3;boulangerie\n".encode("latin-1"))
    with open_texts(tmp_path / "in.csv", "label") as source:
        assert (source.total, source.filled) == (3, 2)
        assert [text for chunk in source.chunks(2) for text in chunk] == ["café crème", "", "boulangerie"]
        copies = list(Path(tempfile.gettempdir()).glob("nace-input-*"))
    assert not [c for c in copies if c.exists()]


@pytest.mark.parametrize("rows", [4, 5, 7, 101, 1000])
def test_the_split_is_scikit_learns_train_test_split_row_for_row(rows):
    from sklearn.model_selection import train_test_split

    from nace_app.data.tables import SPLIT_SEED, split

    frame = pl.DataFrame({"code": [f"{i % 7:02d}.11" for i in range(rows)], "label": [f"text {i}" for i in range(rows)]})
    train, rest = train_test_split(frame, test_size=0.30, random_state=SPLIT_SEED)
    validation, test = train_test_split(rest, test_size=0.50, random_state=SPLIT_SEED)
    ours = split(frame)
    assert ours.train.equals(train) and ours.validation.equals(validation) and ours.test.equals(test)
