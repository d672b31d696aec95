"""Ranking a model's probabilities: the top-k codes and the confidence index (below every use of them)."""

from __future__ import annotations

import numpy as np


def top_k_indices(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable classes per row, best first, compared in float32 as the library does.

    Ties (equal float32 values) are broken by the lower class index first. torch.topk, which the library uses,
    leaves the order of ties unspecified (it varies with the row's length and k), so exact ties are the one place
    where this order may differ from the library's; without ties both orders are the same.
    """
    k = min(k, probabilities.shape[1])
    if len(probabilities) == 0 or k == 0:
        return np.zeros((len(probabilities), k), dtype=np.int64)
    negative = -np.ascontiguousarray(probabilities, dtype=np.float32)
    if k == negative.shape[1]:
        return np.argsort(negative, axis=1, kind="stable")
    kth_best = np.partition(negative, k - 1, axis=1)[:, k - 1 : k]
    candidates = np.argpartition(negative, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(candidates, np.lexsort((candidates, np.take_along_axis(negative, candidates, 1))), 1)
    boundary_ties = (negative <= kth_best).sum(axis=1) > k  # equal values at the k-th place: which ones is arbitrary
    if boundary_ties.any():
        ordered[boundary_ties] = np.argsort(negative[boundary_ties], axis=1, kind="stable")[:, :k]
    return ordered.astype(np.int64)


def confidence_index(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row, as INSEE's production coder shows it (any column order)."""
    if probabilities.shape[1] < 2:
        return probabilities[:, 0].copy()
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]
