"""The Review page's tables: test rows, filters, class search, pages, a row's candidates, the default cell."""

import numpy as np
import polars as pl
import pytest

from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review import tables

LABELS = ["10.71", "47.24", "62.10"]
NOMENCLATURE = load_nomenclature()


@pytest.fixture
def table() -> pl.DataFrame:
    test = pl.DataFrame({"code": ["10.71", "10.71", "47.24", "62.10", "01.11"],
                         "label": ["bakery", "croissant shop", "cake shop", "software house", "wheat farm"]})
    probabilities = np.array([[0.8, 0.15, 0.05], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8],
                              [0.5, 0.3, 0.2]])
    return table_of(test, probabilities)


def table_of(test, probabilities):
    return tables.test_table(test, probabilities, LABELS, NOMENCLATURE)


def test_the_test_table_has_truth_prediction_and_whether_the_model_knows_the_code(table):
    assert table["predicted_code"].to_list() == ["10.71", "47.24", "47.24", "62.10", "10.71"]
    assert table["correct"].to_list() == [True, False, True, True, False]
    assert table["known_to_model"].to_list() == [True, True, True, True, False]
    assert table["top5"][1].to_list() == ["47.24", "10.71", "62.10"]


def test_filters_combine(table):
    wrong = tables.apply_filters(table, tables.Filters())
    assert wrong["row"].to_list() == [1, 4]
    assert tables.apply_filters(table, tables.Filters(true_code="10", outcome="all"))["row"].to_list() == [0, 1]
    assert tables.apply_filters(table, tables.Filters(outcome="all", probability_range=(0.75, 1.0)))["row"].to_list() == [0, 3]
    assert tables.apply_filters(table, tables.Filters(outcome="all", search="SHOP"))["row"].to_list() == [1, 2]
    assert tables.apply_filters(table, tables.Filters(section="A"))["row"].to_list() == [4]


def test_class_search_matches_codes_headings_and_the_descriptions_of_the_class(table):
    classes = tables.per_class(table, NOMENCLATURE)
    assert tables.search_classes(classes, "croissant", "", table)["code"].to_list() == ["10.71"]
    assert tables.search_classes(classes, "bread", "", table)["code"].to_list() == ["10.71", "47.24"]  # headings
    assert tables.search_classes(classes, "62", "", table)["code"].to_list() == ["62.10"]
    assert tables.search_classes(classes, "", "G", table)["code"].to_list() == ["47.24"]


def test_a_class_never_predicted_has_no_precision_rather_than_zero(table):
    classes = tables.per_class(table, NOMENCLATURE)
    assert classes.filter(pl.col("code") == "01.11")["precision"].item() is None


def test_a_class_never_confused_shows_a_dash_not_none(table):
    classes = tables.per_class(table, NOMENCLATURE)
    never = classes.filter(pl.col("code") == "62.10")
    assert never["most_confused_with"].item() == tables.NEVER_CONFUSED and never["confused_count"].item() == 0


def test_exported_rows_round_scores_and_keep_the_top_five_in_one_cell(table):
    exported = tables.export_rows(table, 4)
    assert exported["top5"][1] == "47.24 10.71 62.10"
    assert all(round(p, 4) == p for p in exported["confidence_index"].to_list())
    assert exported["true_code"].to_list() == table["true_code"].to_list()


def test_pages_cover_every_row_once():
    frame = pl.DataFrame({"row": list(range(60))})
    pages = tables.page_count(frame, 25)
    assert pages == 3 and sum(tables.page_of(frame, p, 25).height for p in range(1, pages + 1)) == 60


def test_a_rows_candidates_include_the_true_code_outside_the_top_five(table):
    probabilities = np.array([[0.8, 0.15, 0.05]] * 5)
    row = table.row(4, named=True)
    candidates = tables.row_candidates(row, probabilities, {c: i for i, c in enumerate(LABELS)}, NOMENCLATURE)
    assert candidates["rank"].to_list()[-1] == "true" and candidates["code"].to_list()[-1] == "01.11"
    assert candidates["probability"].to_list()[-1] is None  # the model does not know 01.11


def test_the_default_confusion_cell_is_the_largest_off_diagonal_one():
    matrix = np.array([[50, 3, 0], [7, 40, 1], [0, 0, 9]])
    assert tables.largest_confusion(["A", "B", "C"], matrix) == ("B", "A")
    assert tables.largest_confusion(["A"], np.array([[5]])) is None


def test_set_of_one_automation_counts_what_the_threshold_cards_count():
    import polars as pl_

    from nace_app.review.conformal import CoverageReport

    report = CoverageReport(level=0.9, method="APS", calibration_rows=100, rows=200, unknown_rows=0, coverage=0.9,
                            mean_set_size=2.0, median_set_size=1.0, singleton_share=0.6, singleton_accuracy=0.95,
                            set_sizes=pl_.DataFrame({"size": [1], "rows": [120]}), by_group=None)
    assert tables.set_of_one_automation(report) == {"automated_share": 0.6, "automated_count": 120,
                                                    "automated_accuracy": 0.95, "confident_errors": 6,
                                                    "manual_count": 80}


def test_the_words_of_a_class_split_into_drivers_and_pulls_toward_wrong_codes():
    words = pl.DataFrame({"code": ["10.71", "10.71", "10.71", "47.24"], "kind": ["toward", "toward", "pulls_away", "toward"],
                          "rank": [1, 2, 1, 1], "word": ["bakery", "bread", "shop", "shop"],
                          "mean_score": [2.0, 1.0, 0.5, 3.0], "rows": [5, 3, 2, 4], "class_rows": [6, 6, 2, 4],
                          "wrong_code": [None, None, "47.24", None]})
    toward, away = tables.words_of_class(words, "10.71")
    assert toward["word"].to_list() == ["bakery", "bread"]
    assert away.select("word", "wrong_code").rows() == [("shop", "47.24")]


def test_the_per_class_table_and_the_error_rows_get_their_rev2_classes(table):
    classes = tables.with_rev2(tables.per_class(table, NOMENCLATURE), {"code": "rev2_codes"})
    rev2 = dict(zip(classes["code"].to_list(), classes["rev2_codes"].to_list(), strict=True))
    assert rev2["10.71"] == "10.71 10.86" and rev2["01.11"] == "01.11"
    errors = tables.with_rev2(pl.DataFrame({"true_code": ["46.89", "?"], "predicted_code": ["47.24", "62.10"]}),
                              {"true_code": "true_rev2", "predicted_code": "predicted_rev2"})
    assert errors["true_rev2"].to_list() == ["no Rev 2 link (new in Rev 2.1)", None]
    assert errors["predicted_rev2"].to_list() == ["47.24 47.81 47.91 47.99", "62.01"]
