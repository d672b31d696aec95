"""Batch coding: every input row comes back in order with its columns, and the files open right in a spreadsheet."""

import io
import json

import polars as pl
import pytest

from nace_app.coding.batch import NOT_CODED, code_chunk, code_frame, read_upload, to_csv_bytes, to_xlsx_bytes, write_coded
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.conformal import calibrate_classifier
from nace_app.settings.errors import NaceAppError


@pytest.fixture(scope="module")
def classifier(bag_model_dir):
    return Classifier(load_model(bag_model_dir))


def test_upload_handles_semicolons_bom_and_latin1():
    semicolons = read_upload("x.csv", "\ufefflabel;other\ncafé au lait;1\nboulangerie;2\n".encode())
    assert semicolons.frame.columns == ["label", "other"] and semicolons.frame["label"][0] == "café au lait"
    assert semicolons.separator == ";"
    assert read_upload("y.csv", "label,n\ncafé crème,1\n".encode("latin-1")).frame["label"][0] == "café crème"


def test_a_txt_upload_keeps_its_blank_lines_as_rows():
    assert read_upload("z.txt", b"one\n\ntwo\n").frame["text"].to_list() == ["one", "", "two"]


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("big.csv", b"x" * (20 * 1024 * 1024 + 1), "20 MB"),
    ("blank.txt", b"\n \n", "no text"),
    ("binary.txt", b"\x00\x01\x02PK\x03\x04", "binary"),
    ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("header.csv", b"a,b\n", "no rows"),
])
def test_bad_uploads_are_one_line_errors(name, raw, message):
    with pytest.raises(NaceAppError, match=message):
        read_upload(name, raw)


def test_every_row_comes_back_in_order_with_its_columns_and_empty_rows_are_not_coded(classifier):
    frame = pl.DataFrame({"id": [7, 8, 9, 10], "text": ["bakery bread", "", "   ", "software development"]})
    coded = code_frame(classifier, frame, "text", 3, "top-1 probability", 0.5)
    assert coded["id"].to_list() == [7, 8, 9, 10] and coded["text"].to_list() == frame["text"].to_list()
    assert coded["code_1"].to_list()[1:3] == [None, None] and coded["verdict"].to_list()[1] == NOT_CODED
    assert coded["code_3"].null_count() == 2 and "code_4" not in coded.columns
    assert set(coded["verdict"].to_list()) <= {"automatic", "manual review", NOT_CODED}
    assert all(p is None or round(p, 4) == p for p in coded["probability_1"].to_list())


def test_top_k_follows_the_request_and_input_columns_named_like_ours_are_kept(classifier):
    frame = pl.DataFrame({"text": ["bakery"], "code_1": ["mine"]})
    coded = code_frame(classifier, frame, "text", 5, "confidence index", 0.2)
    assert coded["code_1"].to_list() == ["mine"] and "code_5_nace" in coded.columns and "confidence_index_nace" in coded.columns


def test_csv_has_a_bom_the_input_separator_and_quoted_codes(classifier):
    coded = code_frame(classifier, pl.DataFrame({"text": ["café bakery"]}), "text", 2, "top-1 probability", 0.5)
    raw = to_csv_bytes(coded, ";")
    assert raw.startswith(b"\xef\xbb\xbf")
    body = raw[3:].decode("utf-8")
    assert body.splitlines()[0].count(";") == len(coded.columns) - 1
    assert f'"{coded["code_1"][0]}"' in body and "café" in body


def test_xlsx_keeps_codes_as_text(classifier):
    import zipfile

    coded = code_frame(classifier, pl.DataFrame({"text": ["bakery"]}), "text", 1, "top-1 probability", 0.5)
    with zipfile.ZipFile(io.BytesIO(to_xlsx_bytes(coded))) as workbook:
        strings = workbook.read("xl/sharedStrings.xml").decode()
    assert coded["code_1"][0] in strings  # a shared string, not a number cell


@pytest.fixture(scope="module")
def chunks(classifier, tiny_frame):
    """Two coded chunks with prediction sets, the first with a blank row."""
    calibrator = calibrate_classifier(classifier, tiny_frame, 0.9)
    return [code_chunk(classifier, ["bakery bread", "  ", "software"], 2, calibrator),
            code_chunk(classifier, ["car repair"], 2, calibrator)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_streamed_output_has_every_row_in_order_with_blank_rows_not_coded(tmp_path, chunks, suffix):
    output = tmp_path / f"out{suffix}"
    write_coded(chunks, output)
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        texts, coded = [r["text"] for r in rows], [bool(r["predictions"]) for r in rows]
        sets = [r["prediction_set"] for r in rows]
    else:
        frame = pl.read_csv(output, infer_schema=False) if suffix == ".csv" else pl.read_parquet(output)
        texts, coded = frame["text"].to_list(), [c is not None for c in frame["code_1"].to_list()]
        sets = [s.split(" ") if isinstance(s, str) else s for s in frame["prediction_set"].to_list()]
    assert texts == ["bakery bread", "  ", "software", "car repair"] and coded == [True, False, True, True]
    assert [s[0] if s else None for s in sets] == [chunks[0].top.codes[0, 0], None, chunks[0].top.codes[1, 0],
                                                   chunks[1].top.codes[0, 0]]


def test_a_write_that_fails_midway_leaves_the_previous_output_and_no_partial_file(tmp_path, chunks):
    output = tmp_path / "out.jsonl"
    output.write_text("the previous run\n")

    def failing():
        yield chunks[0]
        raise NaceAppError("the input broke off")

    with pytest.raises(NaceAppError, match="broke off"):
        write_coded(failing(), output)
    assert output.read_text() == "the previous run\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
