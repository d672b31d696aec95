"""`nace-app` verbs, their JSON contracts, and one-line errors with exit code 2 for bad input."""

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest

from nace_app.cli.main import main


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *argv):
    """The verb's JSON document, once it has exited with code 0."""
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


def messages(err: str) -> list[str]:
    """Warnings and errors, without the progress lines."""
    return [line for line in err.splitlines() if line.startswith("nace-app:")]


def test_info_json_names_sources_and_configuration(capsys):
    info = run_json(capsys, "info")
    assert info["model"]["num_classes"] == 651 and info["model"]["source"]["uri"] == "embedded"
    assert info["fallbacks"] == [] and info["cache_dir"]
    assert info["codes_missing_from_train"] == []  # every demo class has rows in the train split
    assert "MLFLOW_TRACKING_PASSWORD" not in json.dumps(info)


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
        texts = frame["description"].to_list()
        assert frame.columns[:2] == ["id", "description"] and frame["id"].cast(pl.String).to_list() == ["1", "2", "3"]
        assert {"code_1", "heading_2", "probability_2"} <= set(frame.columns)
    assert texts == ["bakery", "software house", "taxi driver"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_coded_files_keep_every_input_column_and_never_overwrite_one(capsys, tmp_path, suffix):
    source = tmp_path / "register.parquet"
    pl.DataFrame({"siren": ["001", "002", "003"], "label": ["bakery", None, "taxi driver"], "code_1": ["x", "y", "z"],
                  "employees": [3, 40, 1]}).write_parquet(source)
    output = tmp_path / f"coded{suffix}"
    code, _, _ = run(capsys, "predict", "--input", str(source), "--output", str(output), "--top-k", "1",
                     "--coverage", "0.9", "--chunk-rows", "2")
    frame = pl.read_csv(output, infer_schema=False) if suffix == ".csv" else pl.read_parquet(output)
    assert code == 0 and frame.columns == ["siren", "label", "code_1", "employees", "code_1_nace", "heading_1_nace",
                                           "probability_1_nace", "confidence_index_nace", "prediction_set_nace",
                                           "follow_up_nace"]
    assert frame["siren"].to_list() == ["001", "002", "003"] and frame["code_1"].to_list() == ["x", "y", "z"]
    assert [c is not None for c in frame["code_1_nace"].to_list()] == [True, False, True]


def test_text_arguments_beside_an_input_file_fill_only_its_text_column(capsys, tmp_path):
    pl.DataFrame({"id": [7], "label": ["bakery"]}).write_parquet(tmp_path / "in.parquet")
    code, _, _ = run(capsys, "predict", "florist", "--input", "in.parquet", "--output", "out.parquet", "--top-k", "1")
    frame = pl.read_parquet(tmp_path / "out.parquet")
    assert code == 0 and frame["label"].to_list() == ["florist", "bakery"] and frame["id"].to_list() == [None, 7]


def test_a_txt_input_keeps_its_blank_lines_in_place_not_coded(capsys, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("bakery\n\nflorist\n")
    code, out, err = run(capsys, "predict", "--input", str(source), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["bakery", "", "florist"]
    assert [bool(r["predictions"]) for r in rows] == [True, False, True]
    assert "coded 3 of 3 rows" in err


def test_missing_and_blank_texts_of_a_parquet_keep_their_place_not_coded(capsys, tmp_path):
    source = tmp_path / "in.parquet"
    pl.DataFrame({"label": ["bakery", None, "  ", "florist"]}).write_parquet(source)
    code, _, _ = run(capsys, "predict", "--input", str(source), "--output", "out.csv", "--top-k", "2")
    frame = pl.read_csv(tmp_path / "out.csv")
    assert code == 0 and frame.height == 4
    assert [c is not None for c in frame["code_1"].to_list()] == [True, False, False, True]
    assert frame["code_2"].null_count() == 2 and frame["confidence_index"].null_count() == 2


def test_a_large_input_is_coded_in_chunks_with_progress_and_its_order_kept(capsys, tmp_path):
    texts = ["bakery", "software house", "taxi driver", "florist", "car repair"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    code, _, err = run(capsys, "predict", "--input", "in.txt", "--output", "out.parquet", "--chunk-rows", "2")
    import pyarrow.parquet as pq

    assert code == 0 and pl.read_parquet(tmp_path / "out.parquet")["text"].to_list() == texts
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 3  # one a chunk, written as it was coded
    assert [line for line in err.splitlines() if line.startswith("coded")] == [
        "coded 2 of 5 rows", "coded 4 of 5 rows", "coded 5 of 5 rows"]


def test_explanations_report_progress(capsys, tmp_path):
    (tmp_path / "in.txt").write_text("bakery\nflorist\ntaxi\n")
    code, out, err = run(capsys, "predict", "--input", "in.txt", "--explain", "--top-k", "1", "--chunk-rows", "2",
                         "--json")
    assert code == 0 and all("words" in json.loads(line)["predictions"][0] for line in out.splitlines())
    assert "coded and explained 2 of 3 rows" in err and "coded and explained 3 of 3 rows" in err


def test_plain_output_shows_control_characters_escaped_and_json_keeps_them(capsys):
    text = "bakery \x1b[31mred\x1b[0m\x07 and\rcakes \u202e"
    code, out, _ = run(capsys, "predict", text, "--top-k", "1")
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert out.splitlines()[0] == "bakery \\x1b[31mred\\x1b[0m\\x07 and\\rcakes \\u202e"
    code, out, _ = run(capsys, "predict", text, "--top-k", "1", "--json")
    assert json.loads(out)["text"] == text


def test_evaluate_json_contract(capsys):
    result = run_json(capsys, "evaluate")
    assert set(result) >= {"model", "data", "n", "top1_accuracy", "top5_accuracy", "accuracy_by_level", "ece"}
    assert set(result["accuracy_by_level"]) == {"section", "division", "group", "class"}
    levels = result["accuracy_by_level"]
    assert levels["section"] >= levels["division"] >= levels["group"] >= levels["class"] == result["top1_accuracy"]


def test_predict_coverage_adds_the_prediction_set_to_every_output(capsys, tmp_path):
    texts = ["bakery", "we build websites"]
    rows = [json.loads(line) for line in run(capsys, "predict", *texts, "--coverage", "0.9", "--json")[1].splitlines()]
    assert [r["prediction_set"][0] for r in rows] == [r["predictions"][0]["code"] for r in rows]
    code, out, _ = run(capsys, "predict", *texts, "--coverage", "0.9")
    assert code == 0 and f"  with 90% coverage: {', '.join(rows[0]['prediction_set'])}" in out.splitlines()
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n\n")
    run(capsys, "predict", "--input", "in.txt", "--coverage", "0.9", "--output", "out.parquet")
    run(capsys, "predict", "--input", "in.txt", "--coverage", "0.9", "--output", "out.csv")
    sets = [r["prediction_set"] for r in rows] + [None]  # the blank line: not coded
    assert pl.read_parquet(tmp_path / "out.parquet")["prediction_set"].to_list() == sets
    csv_sets = pl.read_csv(tmp_path / "out.csv", infer_schema=False)["prediction_set"].to_list()
    assert csv_sets == [" ".join(s) if s else None for s in sets]


def test_evaluate_coverage_reports_the_sets_on_held_out_rows(capsys):
    conformal = run_json(capsys, "evaluate", "--coverage", "0.9")["conformal"]
    assert conformal["level"] == 0.9 and abs(conformal["coverage"] - 0.9) < 0.05 and conformal["mean_set_size"] >= 1
    assert conformal["rows"] == sum(group["rows"] for group in conformal["by_section"]) and conformal["note"]
    code, out, _ = run(capsys, "evaluate", "--coverage", "0.9")
    assert code == 0 and "prediction sets at 90%" in out and "section C" in out


def test_explain_classes_writes_the_words_table_with_progress_and_caches_it(capsys, tmp_path, bag_model_dir,
                                                                             tiny_parquet):
    sources = ["--model", str(bag_model_dir), "--data", str(tiny_parquet)]
    code, _, err = run(capsys, "explain-classes", "--output", "words.parquet", "--per-class", "3", *sources)
    words = pl.read_parquet(tmp_path / "words.parquet")
    assert code == 0 and "explained" in err and words.height > 0
    assert words.columns == ["code", "kind", "rank", "word", "mean_score", "rows", "class_rows", "wrong_code"]
    assert words["rank"].max() <= 3
    code, _, err = run(capsys, "explain-classes", "--output", "again.csv", "--per-class", "3", *sources)
    assert code == 0 and "explained" not in err.splitlines()[0]  # read from the cache: no rows explained again
    assert pl.read_csv(tmp_path / "again.csv", schema_overrides={"code": pl.String})["word"].to_list() == words["word"].to_list()


@pytest.mark.usefixtures("local_mlflow")
def test_train_with_mlflow_saves_a_loadable_model_and_logs_the_run(capsys, tmp_path):
    out_dir = tmp_path / "model"
    code, out, _ = run(capsys, "train", "--data", "embedded", "--sample", "700", "--epochs", "1", "--out",
                       str(out_dir), "--json", "--embedding-dim", "16", "--vocab-size", "500", "--mlflow")
    summary = json.loads(out)
    assert code == 0 and summary["mlflow_run_id"] and summary["validation"]["n"] > 0
    code, out, _ = run(capsys, "predict", "bakery", "--model", str(out_dir), "--json")
    assert code == 0 and json.loads(out)["predictions"]


def test_an_ngram_model_trains_untracked_by_default_and_reads_a_long_text_to_its_end(capsys, tmp_path):
    out_dir = tmp_path / "ngram"
    code, out, _ = run(capsys, "train", "--data", "embedded", "--sample", "700", "--epochs", "1", "--out",
                       str(out_dir), "--json", "--tokenizer", "ngram", "--embedding-dim", "16", "--buckets", "2000",
                       "--token-dropout", "0.2")
    summary = json.loads(out)
    assert code == 0 and summary["settings"]["tokenizer"] == "ngram" and (out_dir / "model.safetensors").is_file()
    assert summary["mlflow_run_id"] is None and not list(tmp_path.rglob("mlflow.db"))  # no MLflow unless asked
    code, out, _ = run(capsys, "predict", "our family bakery " * 40 + "and cars", "--model", str(out_dir), "--json")
    assert code == 0 and "read_until" not in json.loads(out)


def test_a_windowed_model_says_where_it_stopped_reading(capsys, attention_model_dir, tiny_frame, tmp_path):
    from nace_app.model.formats import load_model, save_model

    loaded = load_model(attention_model_dir, lambda: tiny_frame["code"].to_list())
    own = save_model(loaded.ttc, loaded.labels, tmp_path / "windowed")
    text = "we bake bread " * 60 + "and sell cars"
    code, out, _ = run(capsys, "predict", text, "--model", str(own), "--json")
    stop = json.loads(out)["read_until"]
    assert code == 0 and 0 < stop < len(text)
    code, out, _ = run(capsys, "predict", text, "--model", str(own))
    assert "the model read only" in out


def _truncated_model(request, folder):
    """A `torchTextClassifiers.save()` folder whose checkpoint was cut in half."""
    shutil.copytree(request.getfixturevalue("bag_model_dir"), folder)
    checkpoint = folder / "model_checkpoint.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])


def _model_with_bad_config(folder):
    """Our format, with a config.json whose model settings are nonsense."""
    from nace_app.sources.resolve import embedded_model_dir

    shutil.copytree(embedded_model_dir(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_config": {"embedding_dim": "wide"}}))


def _library_model_with_a_list_as_metadata(request, folder):
    """A `torchTextClassifiers.save()` folder whose metadata.pkl holds a whole pickle of a list, not a dict."""
    import pickle

    shutil.copytree(request.getfixturevalue("bag_model_dir"), folder)
    (folder / "metadata.pkl").write_bytes(pickle.dumps([1, 2, 3]))


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"
INPUT_FILES = {  # written in the test's folder before each row runs
    "empty.csv": b"",
    "other.csv": b"text\nbakery\n",
    "broken.parquet": b"PAR1 this is not parquet",
    "image.txt": PNG,
    "nul.csv": b"label\nbak\x00ery\n",
    "header.csv": b"label,n\n",
    "blank.txt": b"\n   \n\n",
    "blank_column.csv": b"label,n\n,1\n  ,2\n",
    "ragged.csv": b"label,n\nbakery,1\nflorist,2,3\ntaxi,4\n",
    "quote.csv": b'label,n\nbakery,1\ntaxi,2\n"flo"rist,3\n',
    "emoji.txt": "bakery\n\U0001f35e\U0001f35e\U0001f35e\n".encode(),
    "firms.csv": b"label,n\nbakery,1\nflorist,2\n",
    "long.txt": b"bakery\n" + b"our family bakery " * 3000 + b"\n",
}
PARQUETS = {"ints.parquet": pl.Series("label", [1, 2]), "lists.parquet": pl.Series("label", [[1, 2], [3]]),
            "structs.parquet": pl.Series("label", [{"a": 1}, {"a": 2}]), "bytes.parquet": pl.Series("label", [b"x", b"y"])}


@pytest.mark.parametrize("argv, exit_code, message", [
    (["train", "--epochs", "0"], 2, "epochs must be at least 1"),
    (["train", "--sample", "-5"], 2, "at least 2 rows"),
    (["train", "--batch-size", "0"], 2, "batch size must be at least 1"),
    (["train", "--attention", "--embedding-dim", "10"], 2, "multiple of the number of heads"),
    (["train", "--train-on-validation"], 2, "needs --stop-on"),
    (["predict", "--input", "missing.csv"], 2, "does not exist"),
    (["predict", "--input", "folder"], 2, "folder is a directory"),
    (["predict", "--input", "empty.csv"], 2, "empty.csv is empty"),
    (["predict", "--input", "other.csv"], 2, "no column 'label'"),
    (["predict", "--input", "broken.parquet"], 2, "cannot read broken.parquet"),
    (["predict", "--input", "image.txt", "--output", "out.jsonl"], 2, "image.txt looks like a binary file, not text"),
    (["predict", "--input", "nul.csv"], 2, "nul.csv looks like a binary file, not text"),
    (["predict", "--input", "ints.parquet"], 2, "column 'label' holds Int64 values, not text"),
    (["predict", "--input", "lists.parquet"], 2, "column 'label' holds List(Int64) values, not text"),
    (["predict", "--input", "structs.parquet"], 2, "column 'label' holds Struct"),
    (["predict", "--input", "bytes.parquet"], 2, "column 'label' holds Binary values, not text"),
    (["predict", "--input", "header.csv"], 2, "header.csv has a header but no rows"),
    (["predict", "--input", "blank.txt"], 2, "blank.txt has no text"),
    (["predict", "--input", "blank_column.csv"], 2, "blank_column.csv has no text"),
    (["predict", "--input", "ragged.csv"], 2, "cannot read ragged.csv: line 3 is malformed"),
    (["predict", "--input", "quote.csv"], 2, "cannot read quote.csv: line 4 is malformed"),
    (["predict"], 2, "no text"),
    (["predict", "   "], 2, "no text"),
    (["predict", "x", "--top-k", "0"], 2, "top-k must be between 1 and 651"),
    (["predict", "x", "--top-k", "652"], 2, "top-k must be between 1 and 651"),
    (["predict", "x", "--chunk-rows", "0"], 2, "--chunk-rows must be at least 1"),
    (["predict", "x", "--coverage", "0.5"], 2, "coverage level must be between 80% and 99%"),
    (["predict", "x", "--model", "ftp://somewhere/model"], 2, "unknown model URI scheme"),
    (["predict", "x", "--model", "truncated_model"], 2, "model_checkpoint.ckpt: incomplete zip archive"),
    (["evaluate", "--data", "gopher://x"], 2, "unknown data URI scheme"),
    (["predict", "x", "--output", "out.xlsx"], 2, "unsupported output type"),
    (["predict", "x", "--output", "taken.jsonl"], 2, "cannot write taken.jsonl"),
    (["predict", "x", "--model", "s3://projet-funathon/diffusion/mlflow-artifacts/"], 2, "unavailable"),
    (["explain-classes", "--output", "words.xlsx"], 2, "unsupported output type"),
    (["predict", "--engine", "spark", "--input", "in.parquet", "--output", "out.parquet", "--explain"], 2,
     "--explain cannot be used with --engine spark"),
    (["predict", "--engine", "spark", "--input", "missing.parquet", "--output", "out.parquet"], 2, "does not exist"),
    (["predict", "--engine", "spark", "--input", "folder", "--output", "out.parquet"], 2, "unsupported input type"),
    (["predict", "--engine", "spark", "--input", "ints.parquet", "--output", "out.csv"], 2, "name it *.parquet"),
    (["predict", "--engine", "spark", "--input", "ints.parquet", "--output", "out.parquet", "--model", "nowhere"], 2,
     "nowhere"),
    (["predict", "\U0001f35e\U0001f35e\U0001f35e", "--top-k", "1"], 0, "most of '\U0001f35e\U0001f35e\U0001f35e' is unknown to the model"),
    (["predict", "\u0645\u062e\u0628\u0632 \u0644\u0644\u062e\u0628\u0632", "--top-k", "1"], 0, "is unknown to the model"),
    (["predict", "--input", "emoji.txt", "--output", "out.jsonl"], 0, "1 of 2 texts are mostly unknown to the model"),
    (["predict", "--input", "firms.csv", "--output", "firms.csv"], 2, "--output firms.csv is the input file"),
    (["predict", "--input", "firms.csv", "--output", "./firms.csv"], 2, "--output ./firms.csv is the input file"),
    (["predict", "--input", "firms.csv", "--output", "folder/../firms.csv"], 2, "is the input file"),
    (["predict", "--input", "ints.parquet", "--output", "ints.parquet"], 2, "--output ints.parquet is the input file"),
    (["predict", "--input", "long.txt", "--output", "out.jsonl"], 0,
     "1 of 2 texts had more than 2,000 characters: only their first 2,000 were coded"),
    (["predict", "bakery " * 400, "--top-k", "1"], 0, "1 of 1 texts had more than 2,000 characters"),
    (["predict", "x", "--model", ""], 2, "--model is empty"),
    (["evaluate", "--data", ""], 2, "--data is empty"),
    (["evaluate", "--data", "http://[::1/x"], 2, "malformed data URI"),
    (["predict", "x", "--model", "s3://[bucket/x"], 2, "malformed model URI"),
    (["train", "--learning-rate", "nan"], 2, "the learning rate must be a positive finite number"),
    (["train", "--learning-rate", "inf"], 2, "the learning rate must be a positive finite number"),
    (["train", "--label-smoothing", "5"], 2, "label smoothing must be in [0, 1)"),
    (["train", "--label-smoothing", "nan"], 2, "label smoothing must be in [0, 1)"),
    (["train", "--weight-decay", "-1"], 2, "weight decay must be a finite number of at least 0"),
    (["train", "--token-dropout", "nan"], 2, "token dropout must be in [0, 1)"),
    (["train", "--epochs", "1", "--out", "firms.csv/model"], 2, "cannot write the model to firms.csv/model"),
    (["predict", "x", "--model", "bad_config_model"], 2, "bad_config_model/config.json"),
    (["predict", "x", "--model", "list_metadata_model"], 2, "its files do not hold a torchTextClassifiers model"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_input_is_one_line_on_stderr_and_leaves_no_partial_output(capsys, tmp_path, request, argv, exit_code,
                                                                      message):
    for name, raw in INPUT_FILES.items():
        (tmp_path / name).write_bytes(raw)
    for name, column in PARQUETS.items():
        column.to_frame().write_parquet(tmp_path / name)
    (tmp_path / "folder").mkdir()
    (tmp_path / "taken.jsonl").mkdir()  # the output's place is taken by a folder: the final rename fails
    if "truncated_model" in argv:
        _truncated_model(request, tmp_path / "truncated_model")
    if "bad_config_model" in argv:
        _model_with_bad_config(tmp_path / "bad_config_model")
    if "list_metadata_model" in argv:
        _library_model_with_a_list_as_metadata(request, tmp_path / "list_metadata_model")
    code, _, err = run(capsys, *argv)
    assert code == exit_code and "Traceback" not in err
    assert len(messages(err)) == 1 and message in messages(err)[0]
    if exit_code == 2:
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out.jsonl").exists()
    assert not list(tmp_path.glob(".partial-*"))


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink"])
def test_an_output_that_is_the_input_under_any_name_is_refused_and_the_input_left_untouched(capsys, tmp_path, spelling):
    import os

    source = tmp_path / "firms.csv"
    source.write_bytes(b"id,label\n1,bakery\n")
    output = {"same": source, "symlink": tmp_path / "link.csv", "hardlink": tmp_path / "hard.csv"}[spelling]
    if spelling == "symlink":
        output.symlink_to(source)
    elif spelling == "hardlink":
        os.link(source, output)
    code, _, err = run(capsys, "predict", "--input", str(source), "--output", str(output))
    assert code == 2 and "is the input file" in err and len(err.strip().splitlines()) == 1
    assert source.read_bytes() == b"id,label\n1,bakery\n"


def test_output_files_follow_the_umask_like_any_other_file(capsys, tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        code, _, _ = run(capsys, "predict", "bakery", "--output", "out.csv")
    finally:
        os.umask(previous)
    assert code == 0 and (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644


def test_malformed_arguments_are_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--top-k", "abc", "x"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid int value" in err and len(err.strip().splitlines()) == 1


def test_a_default_fallback_is_said_once_on_stderr(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("NACE_MODEL_URI")
    monkeypatch.delenv("NACE_DATA_URI")
    result = subprocess.run([sys.executable, "-m", "nace_app", "info"], capture_output=True, text=True,
                            env={**os.environ, "NACE_CACHE_DIR": str(tmp_path / "cache")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 2  # the model's fallback, then the data's
    assert all(line.startswith("nace-app: ") and "using the embedded demo instead" in line for line in lines)


def test_python_dash_m_entry_point_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nace_app", "predict", "--top-k", "0", "x"], capture_output=True,
                            text=True, env={"NACE_MODEL_URI": "embedded", "PATH": "/usr/bin:/bin",
                                            "NACE_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 2 and "top-k must be between" in result.stderr


NO_TRAINING_STACK = """
import sys
from nace_app.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchTextClassifiers", "transformers", "lightning", "pytorch_lightning") if m in sys.modules)
print("heavy modules:", heavy, file=sys.stderr)
raise SystemExit(code)
"""


@pytest.mark.parametrize("argv", [["predict", "plumber"], ["predict", "--input", "{rows}", "--output", "{out}"], ["evaluate"]])
def test_predicting_and_evaluating_with_the_embedded_model_import_neither_torch_nor_the_library(argv, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("label\nplumber\nbakery selling bread\n")
    argv = [a.format(rows=rows, out=tmp_path / "coded.csv") for a in argv]
    result = subprocess.run([sys.executable, "-c", NO_TRAINING_STACK, *argv], capture_output=True, text=True,
                            env={"NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded", "PATH": "/usr/bin:/bin",
                                 "NACE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "heavy modules: []" in result.stderr
