"""Confidence that holds on text we did not write: a temperature and the conformal scores, fitted on shifted text.

Why: the test split comes from the same writers as the training rows, so a model calibrated there says too much on
third-party text (issue #20: 0.77 mean top-1 probability for 0.64 accuracy; 90% sets that held the right code 3 times
in 4). `resources/shifted_text.csv` holds descriptions by other writers, with rarer words, in three parts: `select`
(choosing a training recipe; never used at runtime), `calibrate` (fits what is here) and `report` (measures it).

A model folder may hold `calibration.json` (written by `training.core.train_model`); a model without one (older runs,
the library's pretrained model) is fitted once when opened (`runtime_calibration`, kept in the cache folder).
Every probability a user sees is then softmax(logits / T); the conformal scores are those of the tempered
probabilities, so the sets match what the pages show.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nace_app.model.classifier import Classifier, tempered_softmax
from nace_app.model.formats import CALIBRATION_FILE
from nace_app.model.ranking import confidence_index
from nace_app.review.conformal import ConformalCalibrator, aps_scores, coverage_report, from_scores, true_indices
from nace_app.review.metrics import CONFIDENCE_INDEX, expected_calibration_error
from nace_app.settings.cachefiles import keep_in_cache
from nace_app.settings.errors import NaceAppError

CALIBRATE_PART, REPORT_PART = "calibrate", "report"
SHIFTED_PARTS = ("select", CALIBRATE_PART, REPORT_PART)
SHIFTED_ROWS_NAME = "held-out shifted descriptions"
GUARANTEE_COVERS = "for descriptions like our held-out texts written apart from the training data"
LOG_TEMPERATURE_BOUNDS = (math.log(0.05), math.log(20.0))
SCORE_DECIMALS = 6

THRESHOLD_RULE = "score ≥ threshold"
SET_RULE = "a prediction set of one code"
AUTOMATION_RULES = (THRESHOLD_RULE, SET_RULE)  # the sidebar's "Automatic coding rule"


def other_rule(rule: str) -> str:
    """The automatic coding rule the sidebar did not choose (shown as the alternative)."""
    return next(other for other in AUTOMATION_RULES if other != rule)


def _shifted_file() -> Any:
    return files("nace_app.resources") / "shifted_text.csv"


@cache
def shifted_text(part: str) -> pl.DataFrame:
    """One part of the shifted text (code, register, label, part); codes kept as text ("01.11")."""
    if part not in SHIFTED_PARTS:
        raise ValueError(f"no part {part!r} in the shifted text: {SHIFTED_PARTS}")
    frame = pl.read_csv(_shifted_file().read_bytes(), schema_overrides={"code": pl.String, "label": pl.String})
    return frame.filter(pl.col("part") == part)


@cache
def shifted_fingerprint() -> str:
    """Of the shifted text's bytes: a regenerated file fits the runtime calibrations again."""
    return hashlib.sha256(_shifted_file().read_bytes()).hexdigest()[:12]


def negative_log_likelihood(logits: np.ndarray, true_index: np.ndarray) -> Callable[[float], float]:
    """T ↦ mean -log softmax(logits / T)[true class] over the rows whose class the model knows.

    Each row is shifted by its maximum once: for every T > 0 the softmax's own shift is that maximum over T, so
    the loss is log Σ exp(s / T) - s_true / T with s = logits - max, one exponential per call.
    """
    known = np.asarray(true_index) >= 0
    rows = logits[known].astype(np.float64)
    shifted = rows - rows.max(axis=1, keepdims=True)
    true = shifted[np.arange(len(rows)), np.asarray(true_index)[known]]
    return lambda temperature: float((np.log(np.exp(shifted / temperature).sum(axis=1)) - true / temperature).mean())


def fit_temperature(logits: np.ndarray, true_index: np.ndarray, iterations: int = 60) -> float:
    """The T minimising the negative log-likelihood: a golden-section search on log T in [0.05, 20].

    Rows whose code the model does not know are skipped; without any row, T = 1 (nothing to fit).
    """
    if not (np.asarray(true_index) >= 0).any():
        return 1.0
    low, high = LOG_TEMPERATURE_BOUNDS
    ratio = (math.sqrt(5) - 1) / 2
    nll = negative_log_likelihood(logits, true_index)
    loss = lambda log_t: nll(math.exp(log_t))  # noqa: E731
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(math.exp((low + high) / 2))


def top1_ece(probabilities: np.ndarray, true_index: np.ndarray) -> float:
    """Expected calibration error of the top-1 probability (15 equal-width bins, review/metrics.py)."""
    correct = probabilities.argmax(axis=1) == np.asarray(true_index)
    return expected_calibration_error(probabilities.max(axis=1), correct)


def untempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits) back from softmax(logits / T): the model's own probabilities, before calibration."""
    if temperature == 1.0:
        return probabilities
    tiny = np.finfo(np.float32).tiny
    return tempered_softmax(np.log(np.maximum(probabilities, tiny)), 1.0 / temperature)


@dataclass(frozen=True)
class Calibration:
    """What `calibration.json` holds: the temperature and the sorted APS scores of the calibration rows (after T)."""

    temperature: float
    scores: np.ndarray  # sorted, rounded up to SCORE_DECIMALS: a larger score only widens the sets
    rows: int
    fitted_on: str

    def calibrator(self, level: float) -> ConformalCalibrator:
        """The sets at any level of the sidebar's slider, from the stored scores."""
        return from_scores(self.scores, level)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "rows": self.rows, "fitted_on": self.fitted_on,
                "scores": [round(float(s), SCORE_DECIMALS) for s in self.scores]}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Calibration:
        scores = np.sort(np.asarray(record.get("scores", []), dtype=np.float64))
        return cls(float(record["temperature"]), scores, int(record.get("rows", len(scores))),
                   str(record.get("fitted_on", "")))

    def save(self, folder: Path) -> Path:
        path = folder / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, folder: Path) -> Calibration:
        return cls.from_dict(json.loads((folder / CALIBRATION_FILE).read_text()))


def fit_calibration(logits: np.ndarray, true_index: np.ndarray, fitted_on: str,
                    temperature: float | None = None) -> Calibration:
    """The temperature (fitted unless given), then the APS scores of the tempered probabilities."""
    if temperature is None:
        temperature = fit_temperature(logits, true_index)
    scores = aps_scores(tempered_softmax(logits, temperature), true_index)
    rounded_up = np.ceil(np.round(scores * 10**SCORE_DECIMALS, 3)) / 10**SCORE_DECIMALS
    return Calibration(temperature, np.sort(rounded_up), len(scores), fitted_on)


def fit_on_shifted_text(classifier: Classifier, temperature: float | None = None) -> Calibration:
    """Fitted on the shifted text's `calibrate` part (codes the model does not know are skipped)."""
    part = shifted_text(CALIBRATE_PART)
    truth = true_indices(classifier.labels, part["code"].to_list())
    fitted_on = (f"{int((truth >= 0).sum()):,} shifted descriptions (the calibrate part of shifted_text.csv, "
                 f"{shifted_fingerprint()})")
    return fit_calibration(classifier.logits(part["label"].to_list()), truth, fitted_on, temperature)


def runtime_calibration(cache_dir: Path) -> Callable[[Classifier], dict[str, Any]]:
    """For `open_model(calibrate=…)`: a model without calibration.json is fitted once, then read from the cache."""

    def calibrate(classifier: Classifier) -> dict[str, Any]:
        path = cache_dir / "calibration" / f"{classifier.weights_fingerprint}-{shifted_fingerprint()}.json"
        try:
            return Calibration.from_dict(json.loads(path.read_text())).to_dict()
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not fitted yet, or a damaged cache file: fitted below
        record = fit_on_shifted_text(classifier).to_dict()
        keep_in_cache(path, lambda out: out.write(json.dumps(record).encode()))
        return record

    return calibrate


def calibration_of(classifier: Classifier) -> Calibration:
    """The model's calibration; a model opened without one gets scores at its own temperature (1), so that its sets
    still match its probabilities."""
    if classifier.calibration is not None:
        return Calibration.from_dict(classifier.calibration)
    return fit_on_shifted_text(classifier, temperature=classifier.temperature)


# --- what the guarantee and the automatic-coding rules do on held-out rows ------------------------------------------


@dataclass(frozen=True)
class HeldOutFigures:
    """The sets and the top-1 calibration on one group of held-out rows."""

    rows_name: str
    rows: int  # rows whose code the model knows
    coverage: float
    mean_set_size: float
    singleton_share: float
    singleton_accuracy: float
    ece_before: float  # top-1 ECE of softmax(logits)
    ece_after: float  # top-1 ECE of softmax(logits / T)


def held_out_figures(rows_name: str, calibration: Calibration, level: float, probabilities: np.ndarray,
                     true_index: np.ndarray) -> HeldOutFigures:
    """`probabilities` are the tempered ones (what the model shows); ECE is measured over the rows it knows."""
    true_index = np.asarray(true_index)
    report = coverage_report(calibration.calibrator(level), probabilities, true_index)
    known = np.asarray(true_index) >= 0
    return HeldOutFigures(rows_name, report.rows, report.coverage, report.mean_set_size, report.singleton_share,
                          report.singleton_accuracy,
                          top1_ece(untempered(probabilities[known], calibration.temperature), true_index[known]),
                          top1_ece(probabilities[known], true_index[known]))


def figures_table(figures: list[HeldOutFigures]) -> pl.DataFrame:
    """One row per measure, one column per group of rows: for the Review page's side-by-side table."""
    measures = [("rows with a code the model knows", lambda f: f"{f.rows:,}"),
                ("coverage reached", lambda f: f"{f.coverage:.1%}"),
                ("mean set size", lambda f: f"{f.mean_set_size:.1f} codes"),
                ("sets of one code", lambda f: f"{f.singleton_share:.1%}"),
                ("accuracy of the sets of one", lambda f: "–" if math.isnan(f.singleton_accuracy)
                 else f"{f.singleton_accuracy:.1%}"),
                ("top-1 ECE before temperature", lambda f: f"{f.ece_before:.3f}"),
                ("top-1 ECE after temperature", lambda f: f"{f.ece_after:.3f}")]
    return pl.DataFrame({"measure": [name for name, _ in measures],
                         **{f.rows_name: [shown(f) for _, shown in measures] for f in figures}})


def rule_description(rule: str, score_name: str, threshold: float, level: float) -> str:
    """The rule in words, with its settings: "top-1 probability ≥ 0.50", "a 90% prediction set of one code"."""
    if rule == SET_RULE:
        return f"a {level:.0%} prediction set of one code"
    return f"{score_name} ≥ {threshold:.2f}"


def automation_scores(probabilities: np.ndarray, score_name: str) -> np.ndarray:
    """The sidebar's score per row, as the Predict page's verdict computes it."""
    if score_name == CONFIDENCE_INDEX:
        return confidence_index(probabilities)
    return probabilities.max(axis=1)


@dataclass(frozen=True)
class RuleRecord:
    """How an automatic-coding rule did on the shifted `report` part: what it coded, and how often rightly."""

    description: str
    rows: int
    coded: int
    correct: int

    @property
    def coded_share(self) -> float:
        return self.coded / self.rows if self.rows else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.coded if self.coded else float("nan")

    @property
    def measured(self) -> str:
        """"was right 88% of the time on 1,180 held-out shifted descriptions (it coded 71% of them)"."""
        if not self.coded:
            return f"coded none of {self.rows:,} {SHIFTED_ROWS_NAME}: its accuracy is unmeasured"
        return (f"was right {self.accuracy:.0%} of the time on {self.rows:,} {SHIFTED_ROWS_NAME} "
                f"(it coded {self.coded_share:.0%} of them)")


def rule_record(rule: str, score_name: str, threshold: float, level: float, calibration: Calibration,
                probabilities: np.ndarray, codes: list[str], labels: list[str]) -> RuleRecord:
    """The rule measured on labelled rows (every row counts: a code the model does not know is an error)."""
    truth = true_indices(labels, codes)
    if rule == SET_RULE:
        try:
            coded = calibration.calibrator(level).set_sizes(probabilities) == 1
        except NaceAppError:  # too few calibration rows for this level: no sets, so nothing is coded by them
            coded = np.zeros(len(codes), dtype=bool)
    elif rule == THRESHOLD_RULE:
        coded = automation_scores(probabilities, score_name) >= threshold
    else:
        raise NaceAppError(f"unknown automatic coding rule {rule!r}: {', '.join(AUTOMATION_RULES)}")
    correct = coded & (probabilities.argmax(axis=1) == truth)
    return RuleRecord(rule_description(rule, score_name, threshold, level), len(codes), int(coded.sum()),
                      int(correct.sum()))
