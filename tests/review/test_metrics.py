import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from nace_app.model.ranking import confidence_index
from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review import metrics

TRUE = ["10.71", "10.71", "10.72", "62.10", "62.20", "62.20", "47.24", "01.11"]
PREDICTED = ["10.71", "10.72", "10.72", "62.20", "62.20", "10.71", "47.24", "01.11"]


def test_accuracy_by_level_truncates_both_sides():
    result = metrics.accuracy_by_level(TRUE, PREDICTED, load_nomenclature())
    assert result["class"] == pytest.approx(5 / 8)
    assert result["group"] == pytest.approx(6 / 8)  # 10.71 vs 10.72 share group 10.7
    assert result["section"] == pytest.approx(7 / 8)


def test_macro_f1_and_per_class_match_scikit_learn():
    assert metrics.macro_f1(TRUE, PREDICTED) == pytest.approx(f1_score(TRUE, PREDICTED, average="macro"))
    table = metrics.per_class_scores(TRUE, PREDICTED)
    labels = table["code"].to_list()
    precision, recall, f1, support = precision_recall_fscore_support(TRUE, PREDICTED, labels=labels,
                                                                     zero_division=0)
    assert np.allclose(table["precision"].fill_null(0.0).to_numpy(), precision)
    assert np.allclose(table["recall"].fill_null(0.0).to_numpy(), recall)
    assert table.filter(table["code"] == "62.20")["most_confused_with"].item() == "10.71"


def test_expected_calibration_error_by_hand():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, False, True, True])
    # bins: 0.95 -> accuracy 0.5 (gap 0.45, weight 2); 0.55 -> accuracy 1.0 (gap 0.45, weight 2)
    assert metrics.expected_calibration_error(confidence, correct, n_bins=10) == pytest.approx(0.45)


def test_top_k_accuracy_counts_unknown_truth_as_error():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    assert metrics.top_k_accuracy(np.array([0, 0, -1]), probabilities, 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(np.array([0, 1, -1]), probabilities, 2) == pytest.approx(2 / 3)


def test_automation_threshold_and_curve():
    score = np.array([0.9, 0.8, 0.4, 0.2])
    correct = np.array([True, False, True, False])
    chosen = metrics.automation_at(score, correct, 0.5)
    assert chosen == {"threshold": 0.5, "automated_share": 0.5, "automated_count": 2, "automated_accuracy": 0.5,
                      "confident_errors": 1, "manual_count": 2}
    curve = metrics.automation_curve(score, correct, points=11)
    at_half = curve.filter(curve["threshold"].is_between(0.49, 0.51))
    assert at_half["automated_share"].item() == 0.5 and at_half["automated_accuracy"].item() == 0.5


def test_confidence_index_is_top1_minus_top2():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert np.allclose(confidence_index(probabilities), [0.2, 0.7])


def test_confusion_matrix_at_section_level():
    labels, matrix = metrics.confusion_matrix(TRUE, PREDICTED, "section", load_nomenclature())
    assert labels == ["A", "C", "G", "K"]
    assert matrix.sum() == len(TRUE)
    assert matrix[labels.index("K"), labels.index("C")] == 1
