"""Dual coding: every Rev 2.1 code of a coded table comes with its Rev 2 classes, as the correspondence table says."""

import polars as pl
import pytest

from nace_app.coding.batch import code_chunk, code_frame
from nace_app.coding.dual_codes import rev2_columns
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.nomenclature.correspondence import NO_REV2_LINK, load_correspondence
from nace_app.review.metrics import TOP1_PROBABILITY


@pytest.fixture(scope="module")
def classifier(bag_model_dir):
    return Classifier(load_model(bag_model_dir))


def test_each_code_column_gets_its_rev2_codes_as_text_or_as_a_list():
    columns = {"code_1": pl.Series(["01.11", "10.71", None, "46.89"]), "heading_1": pl.Series(["a", "b", None, "c"]),
               "code_2_nace": pl.Series(["10.86", None, None, None])}
    as_text = rev2_columns(columns, as_text=True)
    assert as_text["rev2_codes_1"].to_list() == ["01.11", "10.71 10.86", None, NO_REV2_LINK]
    assert as_text["rev2_codes_2_nace"].to_list() == ["10.86", None, None, None]
    assert rev2_columns(columns, as_text=False)["rev2_codes_1"].to_list() == [["01.11"], ["10.71", "10.86"], None, []]


def test_the_batch_output_has_rev2_codes_beside_each_rank(classifier):
    frame = pl.DataFrame({"label": ["bakery bread", "", "software development"]})
    coded = code_frame(classifier, frame, "label", 2, TOP1_PROBABILITY, 0.5)
    correspondence = load_correspondence()
    for rank in (1, 2):
        expected = [None if c is None else " ".join(correspondence.rev2_codes(c)) for c in coded[f"code_{rank}"]]
        assert coded[f"rev2_codes_{rank}"].to_list() == expected
    assert coded["rev2_codes_1"][1] is None  # a blank row is not coded


def test_a_chunk_coded_with_rev2_adds_them_to_each_json_prediction_and_its_frame(classifier):
    chunk = code_chunk(classifier, ["bakery bread", " "], 3, rev2=True)
    row = chunk.rows()[0]
    assert [p["rev2_codes"] for p in row["predictions"]] == [load_correspondence().rev2_codes(p["code"])
                                                             for p in row["predictions"]]
    assert chunk.frame()["rev2_codes_1"].to_list() == [row["predictions"][0]["rev2_codes"], None]
    assert "rev2_codes" not in code_chunk(classifier, ["bakery bread"], 3).rows()[0]["predictions"][0]
