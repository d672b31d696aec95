"""Coding on real Apache Spark (local[2], one session for the whole file): the same answers as the command line."""

import sys

import numpy as np
import polars as pl
import pytest

from nace_app.cli.main import main
from nace_app.settings.errors import NaceAppError

pytest.importorskip("pyspark")

ODD_TEXTS = ["", "   ", None, "boulangerie-pâtisserie à Paris", "Bäckerei und Konditorei", "日本料理店", "🍞🥐",
             "vente de café à emporter", "réparation d'ordinateurs"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("nace-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2").config("spark.pyspark.python", sys.executable)
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "700").getOrCreate())
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")


@pytest.fixture(scope="module")
def register(demo_frame, tmp_path_factory):
    """About 2,000 demo descriptions with blank, missing and non-ASCII ones among them, and an id to join on."""
    texts = demo_frame.sample(n=2000, seed=7)["label"].to_list()
    for position, text in enumerate(ODD_TEXTS):
        texts[position * 211] = text
    path = tmp_path_factory.mktemp("register") / "register.parquet"
    pl.DataFrame({"siren": [f"{i:09d}" for i in range(len(texts))], "label": texts, "employees": range(len(texts))},
                 schema_overrides={"label": pl.String}).write_parquet(path)
    return path


def jobs(spark) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup())


def test_spark_codes_every_row_as_the_command_line_does(spark, register, tmp_path, capsys):
    from nace_app.coding.spark import code_spark_frame

    assert main(["predict", "--input", str(register), "--output", "single.parquet", "--top-k", "3",
                 "--coverage", "0.9"]) == 0
    single = pl.read_parquet(tmp_path / "single.parquet")
    coded = code_spark_frame(spark.read.parquet(str(register)).repartition(3), "label", "embedded", top_k=3,
                             coverage=0.9)
    distributed = pl.from_arrow(coded.toArrow())

    assert distributed.columns == single.columns  # every input column, then the same coding columns
    joined = single.join(distributed, on="siren", suffix="_spark")
    assert joined.height == single.height == 2000
    for column in ("label", "employees", "code_1", "code_2", "code_3", "heading_1", "prediction_set"):
        assert joined[column].to_list() == joined[f"{column}_spark"].to_list(), column
    for column in ("probability_1", "probability_2", "probability_3", "confidence_index"):
        local, remote = joined[column].to_numpy(), joined[f"{column}_spark"].to_numpy()
        assert np.array_equal(np.isnan(local), np.isnan(remote)), column
        assert np.nanmax(np.abs(local - remote)) <= 1e-6, column
    blank = joined.filter(pl.col("label").is_null() | (pl.col("label").str.strip_chars() == ""))
    assert blank.height == 3 and blank["code_1_spark"].null_count() == 3


def test_a_model_uri_that_does_not_exist_fails_in_one_line_before_any_job(spark, tmp_path):
    from nace_app.coding.spark import code_spark_frame

    frame = spark.createDataFrame([("1", "bakery")], "siren string, label string")
    before = jobs(spark)
    with pytest.raises(NaceAppError) as failure:
        code_spark_frame(frame, "label", str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(failure.value) and "\n" not in str(failure.value)
    with pytest.raises(NaceAppError, match="column 'siren' holds int values, not text"):
        code_spark_frame(spark.createDataFrame([(1,)], "siren int"), "siren", "embedded")
    assert jobs(spark) == before


def test_the_command_line_codes_a_register_on_spark_into_a_folder_of_parts(spark, tmp_path, capsys):
    pl.DataFrame({"siren": ["a", "b", "c"], "label": ["bakery", "  ", "we build websites"],
                  "code_1": ["x", "y", "z"]}).write_parquet(tmp_path / "in.parquet")
    code = main(["predict", "--engine", "spark", "--input", "in.parquet", "--output", "coded.parquet", "--top-k", "2"])
    err = capsys.readouterr().err
    assert code == 0 and "coded in.parquet into coded.parquet" in err
    assert (tmp_path / "coded.parquet" / "_SUCCESS").exists()
    coded = pl.read_parquet(tmp_path / "coded.parquet" / "*.parquet").sort("siren")
    assert coded.columns == ["siren", "label", "code_1", "code_1_nace", "heading_1_nace", "probability_1_nace",
                             "code_2_nace", "heading_2_nace", "probability_2_nace", "confidence_index_nace"]
    assert coded["code_1"].to_list() == ["x", "y", "z"]
    assert coded["code_1_nace"].to_list()[0] in ("10.71", "47.24") and coded["code_1_nace"][1] is None
    assert not spark.sparkContext._jsc.sc().isStopped()  # the session it found is left running
