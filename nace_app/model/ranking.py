"""Ranking a model's probabilities: the top-k codes and the confidence index (below every use of them)."""

from __future__ import annotations

import numpy as np


def top_k_indices(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable classes per row, best first, ties broken as torch.topk (the library) does."""
    import torch

    k = min(k, probabilities.shape[1])
    if len(probabilities) == 0:
        return np.zeros((0, k), dtype=np.int64)
    return torch.topk(torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32)), k=k, dim=1)[1].numpy()


def confidence_index(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row, as INSEE's production coder shows it (any column order)."""
    if probabilities.shape[1] < 2:
        return probabilities[:, 0].copy()
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]
