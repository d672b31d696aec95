"""Data warnings on hand-made frames: thin classes, test rows that are training rows in disguise, accuracy per register."""

import polars as pl

from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review.data_checks import (
    SAME_TEXT,
    SAME_WORDS,
    accuracy_by_group,
    accuracy_with_and_without,
    class_counts,
    group_column,
    normalised,
    shared_descriptions,
)


def frame(rows: list[tuple[str, str]], **extra) -> pl.DataFrame:
    return pl.DataFrame({"code": [c for c, _ in rows], "label": [t for _, t in rows], **extra})


TRAIN = frame([("10.71", "Bakery: bread & cakes"), ("10.71", "retail bakery"), ("62.10", "software development"),
               ("47.24", "I sell bread")])
TEST = frame([("10.71", "bakery bread cakes"), ("10.71", "BAKERY retail"), ("62.10", "Software   Development!"),
              ("56.11", "a small restaurant"), ("47.24", "bread I sell")], register=["a", "b", "a", "b", None])


def test_normalising_ignores_case_accents_punctuation_and_spaces():
    assert normalised("  Café-Restaurant,  ÉTÉ! ") == "cafe restaurant ete"


def test_shared_descriptions_find_normalised_and_reordered_duplicates():
    shared = shared_descriptions(TRAIN, TEST)
    assert shared["row"].to_list() == [0, 1, 2, 4]
    kinds = dict(zip(shared["row"].to_list(), shared["kind"].to_list(), strict=True))
    assert kinds == {0: SAME_TEXT, 1: SAME_WORDS, 2: SAME_TEXT, 4: SAME_WORDS}
    assert shared.filter(pl.col("row") == 4)["train_text"].item() == "I sell bread"
    assert shared["same_code"].all()


def test_nothing_is_shared_between_different_descriptions():
    assert shared_descriptions(TRAIN, frame([("01.11", "growing wheat")])).height == 0


def test_class_counts_flag_classes_too_thin_to_judge():
    counts = class_counts(TRAIN, TRAIN.head(0), TEST, load_nomenclature(), min_test_rows=2)
    by_code = {r["code"]: r for r in counts.iter_rows(named=True)}
    assert by_code["10.71"]["train"] == 2 and by_code["10.71"]["test"] == 2 and not by_code["10.71"]["too_few"]
    assert by_code["56.11"]["train"] == 0 and by_code["56.11"]["too_few"]
    assert counts["test"].to_list() == sorted(counts["test"].to_list())
    assert by_code["62.10"]["heading"] and by_code["62.10"]["total"] == 2


def test_accuracy_with_and_without_the_shared_rows():
    summary = accuracy_with_and_without([True, True, False, False], [0, 1, 2])
    assert summary == {"shared_rows": 3, "shared_accuracy": 2 / 3, "other_rows": 1, "other_accuracy": 0.0}


def test_accuracy_per_register():
    assert group_column(TEST) == "register" and group_column(TRAIN) is None
    table = accuracy_by_group(TEST["register"].to_list(), [True, False, True, True, True],
                              [True, True, True, True, False])
    rows = {r["group"]: r for r in table.iter_rows(named=True)}
    assert rows["a"]["rows"] == 2 and rows["a"]["top1"] == 1.0
    assert rows["b"]["top1"] == 0.5 and rows["(none)"]["top5"] == 0.0
    assert table["group"][0] == "b"  # lowest top-1 first
