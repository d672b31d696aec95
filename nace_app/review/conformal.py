"""Prediction sets with guaranteed coverage: split conformal prediction with APS.

APS is the adaptive prediction sets of Romano, Sesia & Candès, "Classification with Valid and Adaptive Coverage",
NeurIPS 2020 (arXiv:2006.02544): a set is the run of most probable codes whose probabilities add up to the
calibrated threshold. A row's score for class y is the probability mass of the classes ranked above y, plus
U times y's own probability; a set holds the classes scoring at most the calibrated quantile.

Guarantee: with the quantile taken at rank ceil((n+1)(1-alpha)) of n calibration scores, a new row exchangeable
with them has its true code in the set with probability at least 1-alpha, and at most 1-alpha + 1/(n+1) when
scores do not tie.
- Default, U = 0: APS's non-randomized sets (the code crossing the threshold is kept), calibrated with their
  own score, so deterministic and never empty (the top code scores 0). Scores tie only at 0, on rows coded right
  at rank 1: the upper bound holds whenever 1-alpha exceeds the model's top-1 accuracy; below it every set is
  the top code alone.
- `randomized=True`, U ~ Uniform(0, 1): exact at any level, but a set can be empty, and on the embedded demo
  the sets were larger (67 codes on average at 90% against 25). U comes from a hash of the row's probabilities,
  so a text always gets the same set while U still varies freely from text to text.

Why APS and not RAPS (Angelopoulos et al., ICLR 2021), whose rank penalty shrinks sets on ImageNet: on the
embedded demo (651 classes) RAPS with the paper's lambda = 0.01, k_reg = 5 gave larger sets at 95% and 99%
(104 and 416 codes on average against 74 and 314) and fewer single-code sets at every level (25% at 90% against
39%), and APS has no parameter to tune on the calibration rows.

Rows whose true code the model does not know (index -1) are dropped from calibration and from the coverage
figures (counted apart): no set can hold a code the model cannot output.

Which rows calibrate: the `calibrate` part of the shifted text (review/calibration.py), descriptions by writers
apart from the training data's. The guarantee holds for texts exchangeable with those, not for every text; the
Review page measures it on the test split and on the shifted text's `report` part side by side.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from nace_app.settings.errors import NaceAppError

MIN_LEVEL, MAX_LEVEL = 0.80, 0.99
TOP_CODES = 32  # the codes ranked per row before falling back to ranking them all (see `_top_ranked`)


@dataclass(frozen=True)
class _Ranked:
    order: np.ndarray  # (rows, classes) class indices, most probable first
    before: np.ndarray  # (rows, classes) probability mass ranked strictly above each position
    own: np.ndarray  # (rows, classes) each position's probability times U (0 unless randomized)


def _uniform_from_rows(probabilities: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per row from a hash of its bytes: reproducible per text, uniform across texts."""
    rows = np.ascontiguousarray(probabilities, dtype=np.float64)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows]
    return np.frombuffer(b"".join(digests), dtype="<u8") / 2.0**64 if digests else np.zeros(0)


@dataclass(frozen=True)
class ConformalCalibrator:
    """The calibrated APS threshold: `sets` gives each row the codes whose score is at most `quantile`."""

    quantile: float
    level: float
    n: int
    randomized: bool = False

    @property
    def method(self) -> str:
        return f"APS (Romano et al. 2020){', randomized' if self.randomized else ''}"

    def _rank(self, probabilities: np.ndarray) -> _Ranked:
        order = np.argsort(-probabilities, axis=1, kind="stable")
        ordered = np.take_along_axis(probabilities, order, axis=1)
        before = np.zeros_like(ordered, dtype=np.float64)  # an exclusive sum: never decreasing, unlike cumsum - p
        np.cumsum(ordered[:, :-1], axis=1, out=before[:, 1:])
        own = ordered * _uniform_from_rows(probabilities)[:, None] if self.randomized else np.zeros_like(ordered)
        return _Ranked(order, before, own)

    def _sizes(self, ranked: _Ranked) -> np.ndarray:
        # The score grows with the rank, so a set is always the first `size` codes of its row.
        return (ranked.before + ranked.own <= self.quantile).sum(axis=1)

    def _top_ranked(self, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's `TOP_CODES` most probable codes (in `_rank`'s order), its set size from them, and which rows
        they cannot settle: a set that may reach the last of them, or a tie at the cut that leaves them ambiguous.

        A set is a run of the most probable codes and rarely passes a few, so sorting each row's top codes
        instead of all of them (651 on the demo) gives the same sizes for a fraction of the work; the prefix sums
        are the same additions in the same order, so the sizes are equal, not close.
        """
        rows, classes = probabilities.shape
        top = min(TOP_CODES, classes - 1)
        if top < 1:
            return np.zeros((rows, 0), dtype=np.int64), np.zeros(rows, dtype=np.int64), np.ones(rows, dtype=bool)
        candidates = np.argpartition(-probabilities, top, axis=1)[:, : top + 1]
        values = np.take_along_axis(probabilities, candidates, axis=1)
        ordering = np.lexsort((candidates, -values), axis=1)  # by probability, ties by class index, as `_rank`
        order = np.take_along_axis(candidates, ordering, axis=1)
        ordered = np.take_along_axis(values, ordering, axis=1)
        before = np.zeros((rows, top), dtype=np.float64)
        np.cumsum(ordered[:, : top - 1], axis=1, out=before[:, 1:])
        own = ordered[:, :top] * _uniform_from_rows(probabilities)[:, None] if self.randomized else 0.0
        inside = before + own <= self.quantile
        unsettled = inside[:, -1] | (ordered[:, top - 1] == ordered[:, top])
        return order[:, :top], inside.sum(axis=1), unsettled

    def set_sizes(self, probabilities: np.ndarray) -> np.ndarray:
        """How many codes each row's set holds."""
        _, sizes, unsettled = self._top_ranked(probabilities)
        if unsettled.any():
            sizes[unsettled] = self._sizes(self._rank(probabilities[unsettled]))
        return sizes

    def sets(self, probabilities: np.ndarray) -> list[np.ndarray]:
        """Each row's set as class indices, most probable first."""
        ranked = self._rank(probabilities)
        return [row[:size] for row, size in zip(ranked.order, self._sizes(ranked), strict=True)]

    def contains(self, probabilities: np.ndarray, true_index: np.ndarray) -> np.ndarray:
        """Whether each row's set holds its true class (never for index -1)."""
        return self.sizes_and_coverage(probabilities, true_index)[1]

    def sizes_and_coverage(self, probabilities: np.ndarray, true_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`set_sizes` and `contains` from one ranking of the rows."""
        true_index = np.asarray(true_index)
        order, sizes, unsettled = self._top_ranked(probabilities)
        found = order == true_index[:, None]
        true_rank = np.where(found.any(axis=1), found.argmax(axis=1), order.shape[1])
        if unsettled.any():
            ranked = self._rank(probabilities[unsettled])
            sizes[unsettled] = self._sizes(ranked)
            true_rank[unsettled] = np.argmax(ranked.order == true_index[unsettled, None], axis=1)
        return sizes, (true_index >= 0) & (true_rank < sizes)


def _check_level(coverage: float) -> None:
    if not MIN_LEVEL <= coverage <= MAX_LEVEL:
        raise NaceAppError(f"the coverage level must be between {MIN_LEVEL:.0%} and {MAX_LEVEL:.0%}, got {coverage:g}")


def aps_scores(probabilities: np.ndarray, true_index: np.ndarray, randomized: bool = False) -> np.ndarray:
    """Each row's APS score for its true class, over the rows whose code the model knows (the others dropped)."""
    true_index = np.asarray(true_index)
    known = true_index >= 0
    probabilities, true_index = probabilities[known], true_index[known]
    ranked = ConformalCalibrator(math.inf, MAX_LEVEL, len(true_index), randomized)._rank(probabilities)
    position = np.argmax(ranked.order == true_index[:, None], axis=1)
    rows = np.arange(len(true_index))
    return ranked.before[rows, position] + ranked.own[rows, position]


def from_scores(scores: np.ndarray, coverage: float, randomized: bool = False) -> ConformalCalibrator:
    """The split-conformal quantile of stored calibration scores, at any level of the slider (80-99%)."""
    _check_level(coverage)
    n = len(scores)
    rank = math.ceil((n + 1) * coverage - 1e-9)  # the finite-sample correction: (n+1), not n
    if rank > n:
        needed = math.ceil(coverage / (1 - coverage) - 1e-9)
        raise NaceAppError(f"{n} calibration rows with a code the model knows: {coverage:.0%} coverage needs at "
                           f"least {needed}")
    quantile = float(np.partition(np.asarray(scores, dtype=np.float64), rank - 1)[rank - 1])
    return ConformalCalibrator(quantile, coverage, n, randomized)


def calibrate(probabilities: np.ndarray, true_index: np.ndarray, coverage: float,
              randomized: bool = False) -> ConformalCalibrator:
    """The split-conformal quantile of the APS scores of labelled rows the model has not been trained on."""
    _check_level(coverage)
    return from_scores(aps_scores(probabilities, true_index, randomized), coverage, randomized)


def true_indices(labels: list[str], codes: list[str]) -> np.ndarray:
    """Each code's class index in the model's labels, -1 for codes the model does not know."""
    index = {code: i for i, code in enumerate(labels)}
    return np.array([index.get(code, -1) for code in codes], dtype=np.int64)


def calibrate_classifier(classifier: Any, calibration: pl.DataFrame, coverage: float) -> ConformalCalibrator:
    """Calibrated on labelled rows (code, label) the model did not train on."""
    probabilities = classifier.predict_proba(calibration["label"].to_list())
    return calibrate(probabilities, true_indices(classifier.labels, calibration["code"].to_list()), coverage)


@dataclass(frozen=True)
class CoverageReport:
    """How the sets did on labelled rows: coverage next to the level asked for, their sizes, per group."""

    level: float
    method: str
    calibration_rows: int
    rows: int  # rows whose true code the model knows: the figures below are over these
    unknown_rows: int
    coverage: float
    mean_set_size: float
    median_set_size: float
    singleton_share: float
    singleton_accuracy: float  # coverage of the one-code sets: the accuracy of coding them automatically
    set_sizes: pl.DataFrame  # size, rows
    by_group: pl.DataFrame | None  # group, rows, coverage, mean_set_size, singleton_share

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "method": self.method, "calibration_rows": self.calibration_rows,
                "rows": self.rows, "unknown_rows": self.unknown_rows, "coverage": self.coverage,
                "mean_set_size": self.mean_set_size, "median_set_size": self.median_set_size,
                "singleton_share": self.singleton_share, "singleton_accuracy": self.singleton_accuracy}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def coverage_report(calibrator: ConformalCalibrator, probabilities: np.ndarray, true_index: np.ndarray,
                    groups: list[str] | None = None) -> CoverageReport:
    """Empirical coverage and set sizes on held-out rows (the test split), optionally per group (NACE section)."""
    true_index = np.asarray(true_index)
    known = true_index >= 0
    sizes, covered = calibrator.sizes_and_coverage(probabilities[known], true_index[known])
    singleton = sizes == 1
    frame = pl.DataFrame({"size": sizes, "covered": covered})
    by_group = None
    if groups is not None:
        by_group = (frame.with_columns(group=pl.Series(np.asarray(groups, dtype=object)[known].tolist(), dtype=pl.String))
                    .group_by("group")
                    .agg(rows=pl.len(), coverage=pl.col("covered").mean(), mean_set_size=pl.col("size").mean(),
                         singleton_share=(pl.col("size") == 1).mean())
                    .sort("group"))
    return CoverageReport(
        level=calibrator.level,
        method=calibrator.method,
        calibration_rows=calibrator.n,
        rows=int(known.sum()),
        unknown_rows=int((~known).sum()),
        coverage=_mean(covered),
        mean_set_size=_mean(sizes),
        median_set_size=float(np.median(sizes)) if len(sizes) else float("nan"),
        singleton_share=_mean(singleton),
        singleton_accuracy=_mean(covered[singleton]),
        set_sizes=frame.group_by("size").agg(rows=pl.len()).sort("size"),
        by_group=by_group,
    )


def held_out_report(calibrator: ConformalCalibrator, probabilities: np.ndarray, codes: list[str], labels: list[str],
                    section_of: Callable[[str], str]) -> CoverageReport:
    """The sets' coverage on labelled rows none of which calibrated them (the test split), by NACE section."""
    return coverage_report(calibrator, probabilities, true_indices(labels, codes), [section_of(code) for code in codes])
