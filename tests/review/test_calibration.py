"""Temperature scaling and stored conformal scores: recovering a known temperature, calibration.json, coverage."""

import json

import numpy as np
import pytest

from nace_app.model.classifier import tempered_softmax
from nace_app.review.calibration import (
    SET_RULE,
    THRESHOLD_RULE,
    Calibration,
    fit_calibration,
    fit_temperature,
    held_out_figures,
    rule_record,
    shifted_text,
    top1_ece,
    untempered,
)
from nace_app.review.conformal import calibrate, coverage_report

CLASSES = 20


def sharpened_rows(rng: np.random.Generator, rows: int, true_temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_temperature): that T is the calibrated one."""
    logits = rng.normal(0.0, 3.0, size=(rows, CLASSES))
    probabilities = tempered_softmax(logits, true_temperature)
    labels = (rng.uniform(size=(rows, 1)) > probabilities.cumsum(axis=1)).sum(axis=1)
    return logits, np.minimum(labels, CLASSES - 1)


@pytest.mark.parametrize("true_temperature", [0.7, 1.0, 2.0, 3.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    logits, labels = sharpened_rows(np.random.default_rng(1), 8000, true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.08)


def test_rows_whose_code_the_model_does_not_know_are_skipped_and_none_known_means_no_change():
    logits, labels = sharpened_rows(np.random.default_rng(2), 4000, 2.0)
    with_unknown = labels.copy()
    with_unknown[:500] = -1
    assert fit_temperature(logits, with_unknown) == pytest.approx(fit_temperature(logits[500:], labels[500:]), rel=1e-6)
    assert fit_temperature(logits, np.full(len(labels), -1)) == 1.0


def test_ece_drops_after_fitting_on_shifted_like_data():
    """An over-confident model (its labels come from softmax(logits / 2.5)): ECE falls once T is fitted on other rows."""
    rng = np.random.default_rng(3)
    logits, labels = sharpened_rows(rng, 3000, 2.5)
    new_logits, new_labels = sharpened_rows(rng, 3000, 2.5)
    temperature = fit_temperature(logits, labels)
    before = top1_ece(tempered_softmax(new_logits), new_labels)
    after = top1_ece(tempered_softmax(new_logits, temperature), new_labels)
    assert before > 0.1 and after < 0.03


def test_untempered_gives_back_the_models_own_probabilities():
    logits, _ = sharpened_rows(np.random.default_rng(4), 50, 1.0)
    np.testing.assert_allclose(untempered(tempered_softmax(logits, 2.0), 2.0), tempered_softmax(logits), atol=1e-12)


def test_calibration_json_round_trips_and_its_calibrator_equals_one_computed_directly(tmp_path):
    logits, labels = sharpened_rows(np.random.default_rng(5), 1500, 2.0)
    labels[:30] = -1
    calibration = fit_calibration(logits, labels, "synthetic rows")
    path = calibration.save(tmp_path)
    assert path.name == "calibration.json" and json.loads(path.read_text())["fitted_on"] == "synthetic rows"
    loaded = Calibration.load(tmp_path)
    assert loaded.temperature == calibration.temperature and loaded.rows == calibration.rows == 1470
    np.testing.assert_allclose(loaded.scores, calibration.scores, atol=1e-12)
    assert (np.diff(loaded.scores) >= 0).all()
    probabilities = tempered_softmax(logits, calibration.temperature)
    test_logits, _ = sharpened_rows(np.random.default_rng(6), 500, 2.0)
    test_probabilities = tempered_softmax(test_logits, calibration.temperature)
    for level in (0.8, 0.9, 0.95, 0.99):
        direct = calibrate(probabilities, labels, level)
        stored = loaded.calibrator(level)
        assert stored.n == direct.n and stored.quantile == pytest.approx(direct.quantile, abs=1.1e-6)
        assert stored.quantile >= direct.quantile  # scores are rounded up: the sets can only widen
        assert (stored.set_sizes(test_probabilities) >= direct.set_sizes(test_probabilities)).all()


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_on_exchangeable_rows_reaches_the_level(level):
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(100):
        calibration = fit_calibration(*sharpened_rows(rng, 300, 2.0), "synthetic")
        logits, labels = sharpened_rows(rng, 300, 2.0)
        probabilities = tempered_softmax(logits, calibration.temperature)
        covered.append(coverage_report(calibration.calibrator(level), probabilities, labels).coverage)
    assert np.mean(covered) >= level - 0.005  # the mean over 100 calibrations: its noise is about 0.002


def test_held_out_figures_and_rule_records_measure_what_they_say():
    rng = np.random.default_rng(8)
    calibration = fit_calibration(*sharpened_rows(rng, 1000, 2.0), "synthetic")
    logits, labels = sharpened_rows(rng, 600, 2.0)
    probabilities = tempered_softmax(logits, calibration.temperature)
    figures = held_out_figures("other rows", calibration, 0.9, probabilities, labels)
    assert figures.rows == 600 and figures.coverage >= 0.85 and figures.ece_after < figures.ece_before
    codes = [str(label) for label in labels]
    names = [str(i) for i in range(CLASSES)]
    threshold = rule_record(THRESHOLD_RULE, "top-1 probability", 0.6, 0.9, calibration, probabilities, codes, names)
    confident = probabilities.max(axis=1) >= 0.6
    assert threshold.coded == confident.sum() and threshold.rows == 600
    assert threshold.accuracy == pytest.approx(np.mean(probabilities[confident].argmax(axis=1) == labels[confident]))
    assert threshold.description == "top-1 probability ≥ 0.60" and "of 600" not in threshold.measured
    assert f"on 600 held-out shifted descriptions (it coded {threshold.coded_share:.0%} of them)" in threshold.measured
    one_code = rule_record(SET_RULE, "top-1 probability", 0.6, 0.9, calibration, probabilities, codes, names)
    assert one_code.coded == (calibration.calibrator(0.9).set_sizes(probabilities) == 1).sum()
    assert one_code.description == "a 90% prediction set of one code"


def test_the_shifted_text_has_its_three_parts_with_codes_as_text():
    calibrate_part, report_part = shifted_text("calibrate"), shifted_text("report")
    assert calibrate_part.height > 500 and report_part.height > 500
    assert set(calibrate_part["part"].unique()) == {"calibrate"}
    assert all(code.count(".") == 1 for code in calibrate_part["code"].to_list()[:50])
    assert not set(calibrate_part["label"].to_list()) & set(report_part["label"].to_list())
