"""Split-conformal APS sets: the finite-sample coverage bound, nesting, input checks, and a real tiny model."""

import math

import numpy as np
import pytest

from nace_app.data.tables import split
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.conformal import calibrate, coverage_report
from nace_app.settings.errors import NaceAppError

CLASSES = 12


def dirichlet_rows(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A perfectly calibrated model: probabilities from a Dirichlet, each label drawn from its own row."""
    probabilities = rng.dirichlet(np.full(CLASSES, 0.4), size=rows)
    cumulative = probabilities.cumsum(axis=1)
    labels = (rng.uniform(size=(rows, 1)) > cumulative).sum(axis=1)
    return probabilities, np.minimum(labels, CLASSES - 1)


def calibrated_on_fresh_rows(seed: int, calibration_rows: int, level: float, new_rows: int, randomized: bool = False):
    """A calibrator on `calibration_rows` Dirichlet rows, and `new_rows` more (probabilities, labels) from the same draw."""
    rng = np.random.default_rng(seed)
    calibrator = calibrate(*dirichlet_rows(rng, calibration_rows), level, randomized=randomized)
    return calibrator, *dirichlet_rows(rng, new_rows)


def mean_coverage_over_trials(level: float, randomized: bool, trials: int, n: int, per_trial: int):
    """Coverage averaged over independent calibrations (the guarantee is marginal over them), with its std."""
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(trials):
        calibrator = calibrate(*dirichlet_rows(rng, n), level, randomized=randomized)
        covered.append(coverage_report(calibrator, *dirichlet_rows(rng, per_trial)).coverage)
    rank = math.ceil((n + 1) * level)
    # Given a calibration, coverage is Beta(rank, n + 1 - rank); each trial adds binomial noise on top.
    calibration_variance = rank * (n + 1 - rank) / ((n + 1) ** 2 * (n + 2))
    std = math.sqrt((calibration_variance + level * (1 - level) / per_trial) / trials)
    return float(np.mean(covered)), std


@pytest.mark.parametrize("randomized", [False, True])
@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_on_held_out_rows_lies_within_the_finite_sample_bound(level, randomized):
    n = 100
    coverage, std = mean_coverage_over_trials(level, randomized, trials=600, n=n, per_trial=200)
    assert level - 4 * std <= coverage <= level + 1 / (n + 1) + 4 * std


def test_default_sets_always_hold_the_top_code():
    calibrator, probabilities, _ = calibrated_on_fresh_rows(1, 500, 0.8, 5000)
    assert all(chosen[0] == row.argmax() for chosen, row in zip(calibrator.sets(probabilities), probabilities, strict=True))


def test_a_level_below_the_top1_accuracy_gives_the_top_code_alone():
    rng = np.random.default_rng(2)
    confident = rng.dirichlet(np.full(CLASSES, 0.02), size=4000)  # top-1 right about 95% of the time
    labels = (rng.uniform(size=(4000, 1)) > confident.cumsum(axis=1)).sum(axis=1).clip(max=CLASSES - 1)
    calibrator = calibrate(confident[:2000], labels[:2000], 0.8)
    assert calibrator.quantile == 0.0
    assert (calibrator.set_sizes(confident[2000:]) == 1).all()


@pytest.mark.parametrize("randomized", [False, True])
def test_sets_are_nested_as_the_coverage_level_grows(randomized):
    rng = np.random.default_rng(3)
    calibration, test = dirichlet_rows(rng, 2000), dirichlet_rows(rng, 2000)[0]
    previous = None
    for level in (0.8, 0.85, 0.9, 0.95, 0.99):
        sets = calibrate(*calibration, level, randomized=randomized).sets(test)
        if previous is not None:
            assert all(set(small) <= set(large) for small, large in zip(previous, sets, strict=True))
        previous = sets


@pytest.mark.parametrize("randomized", [False, True])
def test_sets_are_the_most_probable_codes_first_and_match_set_sizes(randomized):
    calibrator, probabilities, _ = calibrated_on_fresh_rows(4, 1000, 0.9, 300, randomized=randomized)
    sets = calibrator.sets(probabilities)
    assert [len(s) for s in sets] == calibrator.set_sizes(probabilities).tolist()
    for row, chosen in zip(probabilities, sets, strict=True):
        assert np.all(np.diff(row[chosen]) <= 0)
        assert len(chosen) == 0 or row[chosen].min() >= np.delete(row, chosen).max(initial=0)


def test_a_row_gets_the_same_randomized_set_alone_or_in_a_batch():
    calibrator, probabilities, _ = calibrated_on_fresh_rows(5, 1000, 0.9, 50, randomized=True)
    batch = calibrator.sets(probabilities)
    assert all(np.array_equal(calibrator.sets(probabilities[i : i + 1])[0], batch[i]) for i in range(50))


def test_rows_with_a_code_unknown_to_the_model_are_dropped_from_calibration_and_counted_apart():
    rng = np.random.default_rng(6)
    probabilities, labels = dirichlet_rows(rng, 400)
    labels[:50] = -1
    calibrator = calibrate(probabilities, labels, 0.9)
    assert calibrator.n == 350
    assert calibrator == calibrate(probabilities[50:], labels[50:], 0.9)
    report = coverage_report(calibrator, probabilities, labels)
    assert (report.rows, report.unknown_rows) == (350, 50)


@pytest.mark.parametrize("level", [0.5, 0.79, 0.995, 1.0])
def test_levels_outside_80_to_99_percent_are_refused(level):
    rng = np.random.default_rng(8)
    with pytest.raises(NaceAppError, match="between 80% and 99%"):
        calibrate(*dirichlet_rows(rng, 500), level)


def test_too_few_calibration_rows_are_refused_with_the_number_needed():
    rng = np.random.default_rng(9)
    probabilities, labels = dirichlet_rows(rng, 98)
    with pytest.raises(NaceAppError, match="needs at least 99"):
        calibrate(probabilities, labels, 0.99)
    assert calibrate(*dirichlet_rows(rng, 99), 0.99).n == 99


def test_report_gives_sizes_singletons_and_groups_consistently():
    calibrator, probabilities, labels = calibrated_on_fresh_rows(10, 1000, 0.8, 3000)
    groups = ["A" if i % 3 else "B" for i in range(3000)]
    report = coverage_report(calibrator, probabilities, labels, groups)
    sizes = calibrator.set_sizes(probabilities)
    covered = calibrator.contains(probabilities, labels)
    assert report.set_sizes["rows"].sum() == 3000
    assert report.mean_set_size == pytest.approx(sizes.mean())
    assert report.singleton_share == pytest.approx((sizes == 1).mean())
    assert report.singleton_accuracy == pytest.approx((probabilities.argmax(1) == labels)[sizes == 1].mean())
    by_group = {row["group"]: row for row in report.by_group.iter_rows(named=True)}
    in_b = np.array(groups) == "B"
    assert by_group["B"]["rows"] == in_b.sum()
    assert by_group["B"]["coverage"] == pytest.approx(covered[in_b].mean())
    assert report.to_dict()["coverage"] == pytest.approx(covered.mean())


def test_sets_on_the_tiny_real_model_start_with_its_top_code(bag_model_dir, tiny_frame):
    classifier = Classifier(load_model(bag_model_dir))
    splits = split(tiny_frame)

    def probabilities_and_truth(frame):
        truth = np.array([classifier.label_index.get(c, -1) for c in frame["code"].to_list()])
        return classifier.predict_proba(frame["label"].to_list()), truth

    calibrator = calibrate(*probabilities_and_truth(splits.validation), 0.8)
    probabilities, truth = probabilities_and_truth(splits.test)
    sets = calibrator.sets(probabilities)
    top = classifier.predict_top_k(splits.test["label"].to_list(), top_k=1).codes[:, 0]
    assert [classifier.labels[s[0]] for s in sets] == top.tolist()
    sections = [classifier.nomenclature.section_of(c) for c in splits.test["code"].to_list()]
    report = coverage_report(calibrator, probabilities, truth, sections)
    assert report.rows == splits.test.height
    assert report.coverage == pytest.approx(np.mean([t in s for t, s in zip(truth, sets, strict=True)]))
    assert set(report.by_group["group"].to_list()) == set(sections)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
def test_a_calibrator_from_stored_scores_equals_one_computed_directly(level):
    from nace_app.review.conformal import aps_scores, from_scores

    probabilities, labels = dirichlet_rows(np.random.default_rng(5), 800)
    labels[:20] = -1  # codes the model does not know: dropped from the scores as from calibrate
    scores = aps_scores(probabilities, labels)
    assert len(scores) == 780
    assert from_scores(np.sort(scores), level) == calibrate(probabilities, labels, level)


def test_the_held_out_report_covers_every_test_row_by_section(tiny_frame, bag_model_dir):
    from nace_app.review.conformal import calibrate_classifier, held_out_report

    classifier = Classifier(load_model(bag_model_dir))
    splits = split(tiny_frame)
    calibrator = calibrate_classifier(classifier, splits.validation, 0.8)
    codes = splits.test["code"].to_list()
    report = held_out_report(calibrator, classifier.predict_proba(splits.test["label"].to_list()), codes,
                             classifier.labels, classifier.nomenclature.section_of)
    assert report.rows + report.unknown_rows == splits.test.height
    assert report.by_group["rows"].sum() == report.rows and report.calibration_rows == calibrator.n


@pytest.mark.parametrize("randomized", [False, True])
@pytest.mark.parametrize("classes", [5, 40, 651])
def test_set_sizes_and_coverage_from_each_rows_top_codes_equal_those_of_ranking_every_code(randomized, classes):
    from nace_app.review.conformal import ConformalCalibrator

    rng = np.random.default_rng(7)
    logits = rng.normal(size=(600, classes)) * rng.choice([0.3, 1.0, 4.0, 12.0], size=(600, 1))  # flat to peaked
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)
    probabilities[::7] = np.round(probabilities[::7], 2)  # rows full of ties, at the cut too
    true_index = rng.integers(-1, classes, size=600)
    for quantile in (0.0, 0.3, 0.9, 0.999, np.inf):
        calibrator = ConformalCalibrator(quantile, 0.9, 100, randomized)
        ranked = calibrator._rank(probabilities)  # every code ranked: the reference
        full_true_rank = np.argmax(ranked.order == true_index[:, None], axis=1)
        assert np.array_equal(calibrator.set_sizes(probabilities), calibrator._sizes(ranked))
        assert np.array_equal(calibrator.contains(probabilities, true_index),
                              (true_index >= 0) & (full_true_rank < calibrator._sizes(ranked)))
