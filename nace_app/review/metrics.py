"""Pure functions of (true codes, predicted codes, probabilities): nothing here knows about models or Streamlit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from nace_app.model.ranking import top_k_indices
from nace_app.nomenclature.structure import LEVELS, Nomenclature


def top_k_accuracy(true_index: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the k most probable; a true index of -1 (unknown class) never is."""
    if len(true_index) == 0:
        return float("nan")
    return float(np.mean((top_k_indices(probabilities, k) == true_index[:, None]).any(axis=1)))


def accuracy_by_level(true_codes: list[str], predicted_codes: list[str], nomenclature: Nomenclature) -> dict[str, float]:
    """Accuracy after truncating both codes to each NACE level."""
    result = {}
    for level in LEVELS:
        same = [
            nomenclature.truncate(t, level) == nomenclature.truncate(p, level)
            for t, p in zip(true_codes, predicted_codes, strict=True)
        ]
        result[level] = float(np.mean(same)) if same else float("nan")
    return result


def macro_f1(true_codes: list[str], predicted_codes: list[str]) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truth or the predictions."""
    table = per_class_scores(true_codes, predicted_codes)
    return float(table["f1"].mean()) if table.height else float("nan")


def per_class_scores(true_codes: list[str], predicted_codes: list[str]) -> pl.DataFrame:
    """One row per class: support, precision, recall, F1 and the most frequent wrong prediction.

    Precision is null for a class never predicted and recall for a class absent from the truth (undefined, not 0);
    F1 counts as 0 there, as scikit-learn's macro average does.
    """
    true_counts = Counter(true_codes)
    predicted_counts = Counter(predicted_codes)
    hits = Counter(t for t, p in zip(true_codes, predicted_codes, strict=True) if t == p)
    wrong = Counter((t, p) for t, p in zip(true_codes, predicted_codes, strict=True) if t != p)
    top_wrong: dict[str, tuple[str, int]] = {}
    for (t, p), n in wrong.items():
        if t not in top_wrong or (n, p) > (top_wrong[t][1], top_wrong[t][0]):
            top_wrong[t] = (p, n)
    rows = []
    for code in sorted(set(true_counts) | set(predicted_counts)):
        tp, support, predicted = hits[code], true_counts[code], predicted_counts[code]
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
        confused_with, confused_n = top_wrong.get(code, (None, 0))
        rows.append((code, support, precision, recall, f1, confused_with, confused_n))
    return pl.DataFrame(
        rows,
        schema={"code": pl.String, "support": pl.Int64, "precision": pl.Float64, "recall": pl.Float64,
                "f1": pl.Float64, "most_confused_with": pl.String, "confused_count": pl.Int64},
        orient="row",
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Weighted gap between mean confidence and accuracy over equal-width confidence bins."""
    if len(confidence) == 0:
        return float("nan")
    table = reliability_table(confidence, correct, n_bins)
    return float((table["count"] * (table["mean_confidence"] - table["accuracy"]).abs()).sum() / len(confidence))


def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> pl.DataFrame:
    """Per non-empty bin: bounds, count, mean confidence, accuracy (the reliability diagram)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            rows.append((edges[b], edges[b + 1], int(in_bin.sum()), float(confidence[in_bin].mean()),
                         float(correct[in_bin].mean())))
    return pl.DataFrame(
        rows, schema=["lower", "upper", "count", "mean_confidence", "accuracy"], orient="row"
    ) if rows else pl.DataFrame(schema={"lower": pl.Float64, "upper": pl.Float64, "count": pl.Int64,
                                        "mean_confidence": pl.Float64, "accuracy": pl.Float64})


TOP1_PROBABILITY = "top-1 probability"
CONFIDENCE_INDEX = "confidence index"
AUTOMATION_SCORES = (TOP1_PROBABILITY, CONFIDENCE_INDEX)  # one choice, shared by the Predict and Review pages



def automation_at(score: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, float]:
    """Rows with score >= threshold are coded automatically: their share, accuracy and confident errors."""
    automated = score >= threshold
    n_auto = int(automated.sum())
    return {
        "threshold": float(threshold),
        "automated_share": float(automated.mean()) if len(score) else float("nan"),
        "automated_count": n_auto,
        "automated_accuracy": float(correct[automated].mean()) if n_auto else float("nan"),
        "confident_errors": int((automated & ~correct).sum()),
        "manual_count": int(len(score) - n_auto),
    }


def automation_curve(score: np.ndarray, correct: np.ndarray, points: int = 101) -> pl.DataFrame:
    """Accuracy of the automatically coded rows against the automation rate, for thresholds from 0 to 1."""
    order = np.argsort(-score, kind="stable")
    cumulative_correct = np.cumsum(correct[order])
    sorted_scores = score[order]
    rows = []
    for threshold in np.linspace(0.0, 1.0, points):
        n = int(np.searchsorted(-sorted_scores, -threshold, side="right"))
        rows.append((float(threshold), n / len(score) if len(score) else 0.0,
                     float(cumulative_correct[n - 1] / n) if n else float("nan"), n))
    return pl.DataFrame(rows, schema=["threshold", "automated_share", "automated_accuracy", "automated_count"],
                        orient="row")


def top_confusions(true_codes: list[str], predicted_codes: list[str], limit: int = 20) -> pl.DataFrame:
    pairs = Counter((t, p) for t, p in zip(true_codes, predicted_codes, strict=True) if t != p)
    rows = [(t, p, n) for (t, p), n in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:limit]]
    return pl.DataFrame(rows, schema={"true_code": pl.String, "predicted_code": pl.String, "count": pl.Int64},
                        orient="row")


def confusion_matrix(true_codes: list[str], predicted_codes: list[str], level: str,
                     nomenclature: Nomenclature) -> tuple[list[str], np.ndarray]:
    """Counts of (true, predicted) after truncation to `level`; labels sorted, rows are the truth."""
    true_level = [nomenclature.truncate(c, level) for c in true_codes]
    predicted_level = [nomenclature.truncate(c, level) for c in predicted_codes]
    labels = sorted(set(true_level) | set(predicted_level))
    position = {code: i for i, code in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true_level, predicted_level, strict=True):
        matrix[position[t], position[p]] += 1
    return labels, matrix
