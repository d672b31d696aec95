"""A trained run as the model picker lists it."""

from datetime import datetime
from pathlib import Path

from nace_app.training.runs import TrainedRun, kept_epoch


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
