"""`nace-app` for the Rev 2 -> Rev 2.1 transition: predict --rev2, the follow-up question, relabel."""

import json

import polars as pl
import pytest

from nace_app.cli.main import DEFAULT_REVIEW_BELOW
from nace_app.coding import relabel
from nace_app.nomenclature.correspondence import load_correspondence
from tests.cli.test_cli import messages, run


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")


def json_rows(capsys, *argv) -> list[dict]:
    code, out, _ = run(capsys, "predict", *argv, "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_predict_rev2_adds_each_predictions_rev2_codes_and_says_when_there_is_none(capsys):
    rows = json_rows(capsys, "bakery", "other specialised wholesale n.e.c.", "--rev2", "--top-k", "3")
    correspondence = load_correspondence()
    for prediction in [p for row in rows for p in row["predictions"]]:
        assert prediction["rev2_codes"] == correspondence.rev2_codes(prediction["code"])
    wholesale = rows[1]["predictions"][0]
    assert wholesale["code"] == "46.89" and wholesale["rev2_codes"] == [] and "no Rev 2 link" in wholesale["rev2_note"]
    assert "rev2_codes" not in json_rows(capsys, "bakery")[0]["predictions"][0]


def test_with_coverage_a_set_of_several_codes_gets_one_follow_up_question_partitioning_it(capsys):
    rows = json_rows(capsys, "shoe", "bakery", "wholesale and retail of shoes", "--coverage", "0.9")
    asked = [row for row in rows if len(row["prediction_set"]) > 1]
    assert asked, "a vague text should have a set of several codes"
    for row in rows:
        assert ("follow_up" in row) == (len(row["prediction_set"]) > 1)
    for row in asked:
        kept = [code for answer in row["follow_up"]["answers"] for code in answer["codes"]]
        assert sorted(kept) == sorted(row["prediction_set"]) and row["follow_up"]["question"].endswith("?")


def test_relabel_streams_a_file_keeping_its_columns_and_counts_unknown_codes(capsys, tmp_path):
    (tmp_path / "old.csv").write_text("id;naf;description\n1;0111;growing wheat\n2;47.91;online shoe shop\n"
                                      "3;47.91;\n4;99.99;anything\n5;5610;restaurant\n", encoding="utf-8")
    code, _, err = run(capsys, "relabel", "--input", "old.csv", "--code-column", "naf", "--text-column", "description",
                       "--output", "new.parquet", "--chunk-rows", "2")
    assert code == 0
    frame = pl.read_parquet(tmp_path / "new.parquet")
    assert frame.columns[:3] == ["id", "naf", "description"] and frame["id"].to_list() == ["1", "2", "3", "4", "5"]
    assert frame["relabel_method"].to_list() == ["table", "model", "unknown", "unknown", "model"]
    assert frame["code_rev21"][0] == "01.11" and frame["code_rev21"][1].startswith("47.")
    assert frame["code_rev21"][4] in load_correspondence().rev21_codes("56.10")
    assert "relabelled 4 of 5 rows" in err and "relabelled 5 of 5 rows" in err  # chunk by chunk
    said = messages(err)
    assert "nace-app: relabelled 5 rows: 1 by table, 2 by model, 2 by unknown" in said
    assert "nace-app: 1 row with a code that is no NACE Rev 2 class: '99.99' (1)" in said


@pytest.mark.parametrize(("argv", "says"), [
    (("--output", "new.jsonl"), "use .parquet or .csv"),
    (("--output", "new.csv", "--review-below", "2"), "--review-below"),
    (("--output", "new.csv", "--code-column", "missing"), "no column 'missing'"),
])
def test_relabel_refuses_bad_arguments_in_one_line(capsys, tmp_path, argv, says):
    (tmp_path / "old.csv").write_text("naf,description\n0111,wheat\n", encoding="utf-8")
    arguments = {"--input": "old.csv", "--code-column": "naf", "--text-column": "description"}
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    code, _, err = run(capsys, "relabel", *[item for pair in ({**arguments, **flags}).items() for item in pair])
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_the_command_lines_review_threshold_is_the_modules():
    assert DEFAULT_REVIEW_BELOW == relabel.DEFAULT_REVIEW_BELOW


def test_relabel_reads_a_latin1_semicolon_csv_and_writes_csv(capsys, tmp_path):
    (tmp_path / "old.csv").write_bytes("naf;libellé\n0111;blé tendre\n".encode("latin-1"))
    code, _, _ = run(capsys, "relabel", "--input", "old.csv", "--code-column", "naf", "--text-column", "libellé",
                     "--output", "new.csv")
    frame = pl.read_csv(tmp_path / "new.csv", infer_schema=False)
    assert code == 0 and frame.row(0, named=True) | {"relabel_candidates": None} == {
        "naf": "0111", "libellé": "blé tendre", "code_rev21": "01.11", "relabel_method": "table",
        "relabel_probability": None, "relabel_review": "false", "relabel_candidates": None}
