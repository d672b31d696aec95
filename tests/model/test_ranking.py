"""Top-k without torch: torch.topk's order wherever values differ, lower class index first among exact ties."""

import numpy as np
import pytest

from nace_app.model.ranking import top_k_indices


@pytest.mark.parametrize("classes, k", [(1, 1), (5, 5), (651, 5), (651, 1), (40, 10)])
def test_top_k_equals_torch_topk_when_values_differ(classes, k):
    import torch

    probabilities = np.random.default_rng(classes + k).dirichlet(np.ones(classes), size=50)
    expected = torch.topk(torch.from_numpy(probabilities.astype(np.float32)), k=k, dim=1)[1].numpy()
    assert np.array_equal(top_k_indices(probabilities, k), expected)


def test_ties_are_broken_by_the_lower_class_index_even_at_the_k_th_place():
    rng = np.random.default_rng(0)
    probabilities = rng.integers(0, 4, size=(200, 300)) / 4  # many exact ties, also across the k-th place
    probabilities[0] = 1 / 300  # a uniform row: the first k classes
    for k in (1, 3, 10):
        expected = np.argsort(-probabilities.astype(np.float32), axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_k_indices(probabilities, k), expected)
    assert top_k_indices(probabilities, 3)[0].tolist() == [0, 1, 2]


def test_values_equal_in_float32_count_as_ties():
    row = np.array([[0.5, 0.5 + 1e-12, 0.1]])
    assert top_k_indices(row, 2).tolist() == [[0, 1]]


def test_no_rows_give_an_empty_ranking():
    assert top_k_indices(np.zeros((0, 7)), 3).shape == (0, 3)
