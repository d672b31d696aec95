"""Relabelling Rev 2 rows into Rev 2.1: by the table, by the model restricted to the classes it allows, or unknown."""

import numpy as np
import polars as pl
import pytest

from nace_app.coding.relabel import MODEL, TABLE, UNKNOWN, normalise_rev2_code, relabel_accuracy, relabel_frame, restricted_choice
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.settings.errors import NaceAppError


@pytest.fixture(scope="module")
def classifier(bag_model_dir):
    """Knows 15 classes, among them 10.71 and 10.72 of the six Rev 2 10.86 went to, and 56.11 of 56.11/56.12."""
    return Classifier(load_model(bag_model_dir))


@pytest.fixture(scope="module")
def old_file() -> pl.DataFrame:
    return pl.DataFrame({
        "id": [1, 2, 3, 4, 5, 6, 7],
        "code": ["0111", "10.86", "10.86", "99.99", "01.19", "5610", " 1.11 "],
        "text": ["growing wheat", "bread and pastry bakery", "", "something", "growing spices", "restaurant", None],
    })


def test_each_row_is_relabelled_by_the_table_the_restricted_model_or_left_unknown(classifier, old_file):
    result = relabel_frame(classifier, old_file, "code", "text", review_below=0.5)
    frame = result.frame
    assert frame.columns == ["id", "code", "text", "code_rev21", "relabel_method", "relabel_probability",
                             "relabel_review", "relabel_candidates"]
    assert frame["id"].to_list() == [1, 2, 3, 4, 5, 6, 7]  # every input row and column, in order
    assert frame["relabel_method"].to_list() == [TABLE, MODEL, UNKNOWN, UNKNOWN, UNKNOWN, MODEL, TABLE]
    assert frame["code_rev21"].to_list()[:1] + frame["code_rev21"].to_list()[2:5] == ["01.11", None, None, None]
    assert frame["code_rev21"][1] in ("10.71", "10.72") and frame["code_rev21"][5] == "56.11"  # the only one it knows
    assert frame["code_rev21"][6] == "01.11"  # a blank text with a one-to-one code: the table needs no text
    assert frame["relabel_candidates"][1] == "10.61 10.62 10.71 10.72 10.73 10.86"
    assert frame["relabel_probability"].to_list()[5] == 1.0 and frame["relabel_probability"][0] is None
    assert frame["relabel_review"].to_list() == [False, False, True, True, True, False, False]
    assert result.counts.unknown_codes == {"99.99": 1} and result.counts.blank_ambiguous == 1
    assert result.counts.methods == {TABLE: 2, MODEL: 2, UNKNOWN: 3}


def test_the_model_chooses_among_the_allowed_classes_with_its_probability_renormalised_over_them(classifier, old_file):
    frame = relabel_frame(classifier, old_file, "code", "text").frame
    probabilities = classifier.predict_proba(["bread and pastry bakery"])[0]
    allowed = {code: probabilities[classifier.label_index[code]] for code in ("10.71", "10.72")}
    best = max(allowed, key=allowed.get)
    assert frame["code_rev21"][1] == best
    assert frame["relabel_probability"][1] == pytest.approx(allowed[best] / sum(allowed.values()), abs=1e-4)


def test_relabelling_never_overwrites_an_input_column_and_names_a_missing_one(classifier, old_file):
    clash = old_file.with_columns(code_rev21=pl.lit("mine"))
    frame = relabel_frame(classifier, clash, "code", "text").frame
    assert frame["code_rev21"].to_list() == ["mine"] * 7 and "code_rev21_relabel" in frame.columns
    with pytest.raises(NaceAppError, match="no column 'naf'"):
        relabel_frame(classifier, old_file, "naf", "text")


@pytest.mark.parametrize(("raw", "code"), [("0113", "01.13"), ("1.13", "01.13"), (" 01.13 ", "01.13"), (113, "113"),
                                           (None, ""), ("A01.13", "A01.13")])
def test_rev2_codes_are_read_as_spreadsheets_write_them(raw, code):
    assert normalise_rev2_code(raw) == code


def test_the_restricted_choice_renormalises_over_the_allowed_classes_only():
    chosen, probability = restricted_choice(np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]]), [1, 2])
    assert chosen.tolist() == [1, 2] and probability == pytest.approx([2 / 3, 1.0])
    assert restricted_choice(np.zeros((1, 3)), [0, 2])[1] == pytest.approx([0.5])  # no mass: even odds, not NaN


def test_relabelling_accuracy_compares_the_restricted_model_with_the_unrestricted_one():
    labels = ["10.71", "10.72", "10.86", "47.24", "01.11"]
    probabilities = np.array([
        [0.20, 0.10, 0.05, 0.60, 0.05],  # true 01.11 (Rev 2 01.11 -> 01.11 only): settled by the table
        [0.40, 0.20, 0.30, 0.00, 0.10],  # true 10.86 (Rev 2 10.86 -> six classes): the model's best is 10.71
        [0.05, 0.05, 0.20, 0.00, 0.70],  # true 10.86: restricted it is right (0.20 > 0.05), unrestricted wrong
        [0.30, 0.25, 0.00, 0.00, 0.45],  # true 10.71: draws on Rev 2 10.71 and 10.86, no single Rev 2 code
        [0.10, 0.10, 0.10, 0.60, 0.10],  # true 47.24: draws on four Rev 2 classes, excluded
    ])
    result = relabel_accuracy(probabilities, ["01.11", "10.86", "10.86", "10.71", "47.24"], labels)
    assert (result.rows, result.table_rows, result.excluded_rows) == (2, 1, 2)
    assert result.restricted_accuracy == 0.5 and result.unrestricted_accuracy == 0.0 and result.mean_candidates == 6
