"""`nace-app` verbs, their JSON contracts, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
import sys

import polars as pl
import pytest

from nace_app.cli import main


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_json_names_sources_and_configuration(capsys):
    code, out, _ = run(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["model"]["num_classes"] == 651 and info["model"]["source"]["uri"] == "embedded"
    assert info["fallbacks"] == [] and info["cache_dir"]
    assert info["codes_missing_from_train"] == []  # every demo class has rows in the train split
    assert "MLFLOW_TRACKING_PASSWORD" not in out


def test_info_reports_the_fallback_on_stderr(capsys, monkeypatch):
    monkeypatch.delenv("NACE_MODEL_URI")
    monkeypatch.delenv("NACE_DATA_URI")
    code, out, err = run(capsys, "info")
    assert code == 0 and "fallback" in out and "using the embedded demo" in err


def test_predict_json_rows(capsys):
    code, out, _ = run(capsys, "predict", "I sell croissants in my bakery", "we build websites", "--top-k", "3",
                       "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["I sell croissants in my bakery", "we build websites"]
    for row in rows:
        probabilities = [p["probability"] for p in row["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert all(set(p) == {"code", "heading", "probability"} for p in row["predictions"])


def test_predict_explain_fields_are_complete(capsys):
    text = "I repair cars and carry out technical inspections"
    code, out, _ = run(capsys, "predict", text, "--top-k", "5", "--explain", "--json")
    row = json.loads(out)
    assert code == 0 and len(row["predictions"]) == 5
    for prediction in row["predictions"]:
        assert abs(prediction["attribution_total"] - prediction["logit_delta"]) <= 0.01 * abs(prediction["logit_delta"])
        for word in prediction["words"]:
            assert text[word["start"]:word["end"]] == word["word"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_predict_files_in_and_out_keep_input_order(capsys, tmp_path, suffix):
    source = tmp_path / "in.csv"
    pl.DataFrame({"id": [1, 2, 3], "description": ["bakery", "software house", "taxi driver"]}).write_csv(source)
    output = tmp_path / f"out{suffix}"
    code, _, _ = run(capsys, "predict", "--input", str(source), "--text-column", "description", "--output",
                     str(output), "--top-k", "2")
    assert code == 0
    if suffix == ".jsonl":
        texts = [json.loads(line)["text"] for line in output.read_text().splitlines()]
    else:
        frame = pl.read_csv(output) if suffix == ".csv" else pl.read_parquet(output)
        texts = frame["text"].to_list()
        assert {"code_1", "heading_2", "probability_2"} <= set(frame.columns)
    assert texts == ["bakery", "software house", "taxi driver"]


def test_predict_txt_input(capsys, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("bakery\n\nflorist\n")
    code, out, _ = run(capsys, "predict", "--input", str(source), "--json")
    assert code == 0 and len(out.splitlines()) == 2


def test_evaluate_json_contract(capsys):
    code, out, _ = run(capsys, "evaluate", "--json")
    result = json.loads(out)
    assert code == 0
    assert set(result) >= {"model", "data", "n", "top1_accuracy", "top5_accuracy", "accuracy_by_level", "ece"}
    assert set(result["accuracy_by_level"]) == {"section", "division", "group", "class"}
    levels = result["accuracy_by_level"]
    assert levels["section"] >= levels["division"] >= levels["group"] >= levels["class"] == result["top1_accuracy"]


def test_train_saves_a_loadable_model(capsys, tmp_path):
    out_dir = tmp_path / "model"
    code, out, _ = run(capsys, "train", "--data", "embedded", "--sample", "700", "--epochs", "1", "--out",
                       str(out_dir), "--json", "--embedding-dim", "16", "--vocab-size", "500")
    summary = json.loads(out)
    assert code == 0 and summary["mlflow_run_id"] and summary["validation"]["n"] > 0
    code, out, _ = run(capsys, "predict", "bakery", "--model", str(out_dir), "--json")
    assert code == 0 and json.loads(out)["predictions"]


def test_an_ngram_model_trains_and_reads_a_long_text_to_its_end(capsys, tmp_path):
    out_dir = tmp_path / "ngram"
    code, out, _ = run(capsys, "train", "--data", "embedded", "--sample", "700", "--epochs", "1", "--out",
                       str(out_dir), "--json", "--tokenizer", "ngram", "--embedding-dim", "16", "--buckets", "2000",
                       "--token-dropout", "0.2")
    assert code == 0 and json.loads(out)["settings"]["tokenizer"] == "ngram"
    code, out, _ = run(capsys, "predict", "our family bakery " * 40 + "and cars", "--model", str(out_dir), "--json")
    assert code == 0 and "read_until" not in json.loads(out)


def test_a_windowed_model_says_where_it_stopped_reading(capsys, attention_model_dir, tiny_frame, tmp_path):
    from nace_app.modelio import load_model, save_model

    loaded = load_model(attention_model_dir, lambda: tiny_frame["code"].to_list())
    own = save_model(loaded.ttc, loaded.labels, tmp_path / "windowed")
    text = "we bake bread " * 60 + "and sell cars"
    code, out, _ = run(capsys, "predict", text, "--model", str(own), "--json")
    stop = json.loads(out)["read_until"]
    assert code == 0 and 0 < stop < len(text)
    code, out, _ = run(capsys, "predict", text, "--model", str(own))
    assert "the model read only" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "epochs must be at least 1"),
    (["train", "--sample", "-5"], "at least 2 rows"),
    (["train", "--batch-size", "0"], "batch size must be at least 1"),
    (["train", "--attention", "--embedding-dim", "10"], "multiple of the number of heads"),
    (["train", "--train-on-validation"], "needs --stop-on"),
    (["predict", "--input", "missing.csv"], "does not exist"),
    (["predict", "--input", "empty.csv"], "empty"),
    (["predict", "--input", "other.csv"], "no column 'label'"),
    (["predict", "--input", "broken.parquet"], "cannot read broken.parquet"),
    (["predict"], "no text"),
    (["predict", "   "], "no text"),
    (["predict", "x", "--top-k", "0"], "top-k must be between 1 and 651"),
    (["predict", "x", "--top-k", "652"], "top-k must be between 1 and 651"),
    (["predict", "x", "--model", "ftp://somewhere/model"], "unknown model URI scheme"),
    (["evaluate", "--data", "gopher://x"], "unknown data URI scheme"),
    (["predict", "x", "--output", "out.xlsx"], "unsupported output type"),
    (["predict", "x", "--model", "s3://projet-funathon/diffusion/mlflow-artifacts/"], "unavailable"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "other.csv").write_text("text\nbakery\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malformed_arguments_are_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--top-k", "abc", "x"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid int value" in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nace_app", "predict", "--top-k", "0", "x"], capture_output=True,
                            text=True, env={"NACE_MODEL_URI": "embedded", "PATH": "/usr/bin:/bin",
                                            "NACE_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 2 and "top-k must be between" in result.stderr
