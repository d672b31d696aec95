"""A trained run as the model picker lists it, the epoch it keeps, and the time a run is expected to take."""

from datetime import datetime
from pathlib import Path

import pytest

from nace_app.training.core import TrainingSettings
from nace_app.training.runs import TrainedRun, estimate_seconds, kept_epoch


def test_a_runs_label_starts_with_its_id_and_test_top1_which_a_narrow_picker_must_not_cut():
    run = TrainedRun("042507-1", Path("runs/042507-1/model"), datetime(2026, 12, 7, 14, 5), 0.713, {"tokenizer": "ngram"})
    assert run.name == "042507-1 · top-1 71% · 07 Dec 14:05 · ngram"
    assert len(run.name.split(" · 07 Dec")[0]) <= 24  # fits the sidebar picker with its "Run " prefix
    untested = TrainedRun("042507-2", Path("m"), datetime(2026, 12, 7, 14, 5), None, {})
    assert untested.name == "042507-2 · 07 Dec 14:05 · wordpiece"


def test_the_kept_epoch_is_the_first_with_the_lowest_validation_loss():
    history = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.2}, {"epoch": 3, "val_loss": 1.5},
               {"epoch": 4, "val_loss": 1.2}]
    assert kept_epoch(history) == 2
    assert kept_epoch([]) is None


def _measured_run(cache_dir, name: str, train_seconds: float, age: float) -> None:
    """A finished run's result.json as `run_logged_training` writes it, `age` seconds old."""
    import json
    import os
    import time

    folder = cache_dir / "runs" / name
    folder.mkdir(parents=True)
    result = folder / "result.json"
    result.write_text(json.dumps({"settings": TrainingSettings(epochs=3).to_dict(), "timing": {
        "startup": 2.0, "prepare": 3.0, "train": train_seconds, "finish": 5.0, "rows": 10_000, "rows_seen": 30_000}}))
    os.utime(result, (time.time() - age, time.time() - age))


def test_the_time_estimate_is_the_median_of_recent_runs_so_one_run_on_a_loaded_server_does_not_set_it(tmp_path):
    for age, seconds in enumerate([30.0, 31.0, 29.0, 32.0]):
        _measured_run(tmp_path, f"quiet-{age}", seconds, age=100 + age)
    _measured_run(tmp_path, "under-load", 7000.0, age=1)  # the latest
    three_epochs = TrainingSettings(epochs=3)  # as the measured runs: their training time then scales by 1
    estimate = estimate_seconds(three_epochs, 10_000, tmp_path)
    assert estimate == pytest.approx(2.0 + 3.0 + 31.0 + 5.0)  # the median of 29, 30, 31, 32 and 7000 s of training
    assert estimate_seconds(three_epochs, 10_000, tmp_path, recent=1) == pytest.approx(7010.0)
