"""One evaluation for every caller, checked by hand on a small example."""

import numpy as np
import pytest

from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review.evaluation import evaluate


def test_figures_by_hand_with_a_code_the_model_does_not_know():
    labels = ["10.71", "10.72", "47.24"]
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    result = evaluate(["10.71", "10.71", "47.24", "01.11"], probabilities, labels, load_nomenclature())
    assert result.n == 4 and result.top1_accuracy == pytest.approx(0.5)
    assert result.top5_accuracy == pytest.approx(0.75)  # 01.11 is never among the candidates
    assert result.accuracy_by_level["group"] == pytest.approx(0.75)  # 10.71 vs 10.72 share group 10.7
    assert result.unknown_codes == ["01.11"] and result.unknown_rows == 1 and result.classes == 3
    assert set(result.to_dict()) >= {"top1_accuracy", "accuracy_by_level", "macro_f1", "ece"}


def test_an_empty_split_gives_nan_not_an_error():
    result = evaluate([], np.zeros((0, 2)), ["a", "b"], load_nomenclature())
    assert result.n == 0 and np.isnan(result.top1_accuracy)


def test_corrected_texts_are_left_out_of_a_split_and_counted():
    import polars as pl

    from nace_app.review.evaluation import without_texts

    split = pl.DataFrame({"code": ["10.71", "47.24", "10.71"], "label": ["bakery", "cake shop", "bakery"]})
    kept, removed = without_texts(split, ["bakery", "not in the split"])
    assert kept["label"].to_list() == ["cake shop"] and removed == 2


def test_comparison_rows_keep_the_order_and_the_figures_of_each_evaluation():
    from nace_app.review.evaluation import comparison_rows

    labels = ["10.71", "47.24"]
    first = evaluate(["10.71"], np.array([[0.9, 0.1]]), labels, load_nomenclature())
    second = evaluate(["47.24", "10.71"], np.array([[0.9, 0.1], [0.9, 0.1]]), labels, load_nomenclature())
    rows = comparison_rows({"before": first, "after": second})
    assert [(r["model / split"], r["rows"], r["top-1"]) for r in rows] == [("before", 1, 1.0), ("after", 2, 0.5)]
