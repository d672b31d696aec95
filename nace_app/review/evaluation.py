"""A model's figures on a labelled split, one way for every caller (the CLI, Review, Train)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from nace_app.model.numpy_forward import TokenCounts
from nace_app.nomenclature.structure import Nomenclature
from nace_app.review import metrics


@dataclass(frozen=True)
class Evaluation:
    """Top-1/top-5, accuracy at every NACE level, macro-F1 and ECE; rows whose code the model lacks count as errors."""

    n: int
    top1_accuracy: float
    top5_accuracy: float
    accuracy_by_level: dict[str, float]
    macro_f1: float
    ece: float
    classes: int
    unknown_codes: list[str]
    unknown_rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(true_codes: list[str], probabilities: np.ndarray, labels: list[str],
             nomenclature: Nomenclature) -> Evaluation:
    label_index = {code: i for i, code in enumerate(labels)}
    true_index = np.array([label_index.get(c, -1) for c in true_codes], dtype=np.int64)
    if not true_codes:
        nan = float("nan")
        return Evaluation(0, nan, nan, {}, nan, nan, 0, [], 0)
    best = probabilities.argmax(axis=1)
    predicted = [labels[i] for i in best]
    correct = best == true_index
    unknown = sorted({c for c, i in zip(true_codes, true_index, strict=True) if i < 0})
    return Evaluation(
        n=len(true_codes),
        top1_accuracy=float(correct.mean()),
        top5_accuracy=metrics.top_k_accuracy(true_index, probabilities, 5),
        accuracy_by_level=metrics.accuracy_by_level(true_codes, predicted, nomenclature),
        macro_f1=metrics.macro_f1(true_codes, predicted),
        ece=metrics.expected_calibration_error(probabilities.max(axis=1), correct),
        classes=len(set(true_codes)),
        unknown_codes=unknown,
        unknown_rows=int((true_index < 0).sum()),
    )


def evaluate_classifier(classifier, frame: pl.DataFrame) -> Evaluation:
    """A classifier on a labelled frame (columns code, label)."""
    probabilities = classifier.predict_proba(frame["label"].to_list())
    return evaluate(frame["code"].to_list(), probabilities, classifier.labels, classifier.nomenclature)


def evaluate_counted(classifier, true_codes: list[str], counts: TokenCounts) -> Evaluation:
    """A mean-pooling classifier on texts already counted (a training run's validation split): the figures
    `evaluate_classifier` gives on the same texts, without tokenizing them again."""
    return evaluate(true_codes, classifier.counted_proba(counts), classifier.labels, classifier.nomenclature)


def without_texts(frame: pl.DataFrame, texts: list[str]) -> tuple[pl.DataFrame, int]:
    """`frame` without the rows whose text is in `texts`, and how many rows that removed."""
    kept = frame.filter(~pl.col("label").is_in(texts))
    return kept, frame.height - kept.height


def comparison_rows(evaluations: dict[str, Evaluation]) -> list[dict[str, Any]]:
    """One table row per (model, split) name: the figures the Train page sets side by side."""
    return [{"model / split": name, "rows": e.n, "top-1": e.top1_accuracy, "top-5": e.top5_accuracy,
             "macro-F1": e.macro_f1, "ECE": e.ece, "section": e.accuracy_by_level.get("section"),
             "division": e.accuracy_by_level.get("division")} for name, e in evaluations.items()]
