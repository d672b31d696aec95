"""One evaluation for every caller, checked by hand on a small example."""

import numpy as np
import pytest

from nace_app.evaluation import evaluate
from nace_app.nomenclature import load_nomenclature


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
