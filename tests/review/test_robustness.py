"""Behavioural tests: seeded, deterministic edits as people make them, and the share of rows that keep their code."""

import polars as pl
import pytest

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.robustness import EDITS, edited, robustness_report, sample_rows

TEXT = "I sell croissants and pains au chocolat in my bakery"


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_is_the_same_for_the_same_seed_and_row(edit):
    assert edited(TEXT, edit, 3, 7) == edited(TEXT, edit, 3, 7)


def test_a_typo_swaps_two_neighbouring_letters_of_one_word():
    variants = {edited(TEXT, "typo", seed, 0) for seed in range(20)}
    assert len(variants) > 3  # the seed moves the typo
    for variant in variants:
        assert sorted(variant) == sorted(TEXT) and variant != TEXT
        changed = [i for i, (a, b) in enumerate(zip(TEXT, variant, strict=True)) if a != b]
        assert len(changed) == 2 and changed[1] == changed[0] + 1


def test_case_punctuation_and_stop_words():
    assert edited(TEXT, "case", 0, 0) == TEXT.lower()
    assert edited("bakery and cafe", "case", 0, 0) == "Bakery And Cafe"
    assert edited("Bakery, cafe & tea-room!", "punctuation", 0, 0) == "Bakery cafe tea room"
    assert edited("bakery", "punctuation", 0, 0) == "bakery."
    dropped = edited(TEXT, "stop word dropped", 0, 0)
    assert dropped in {TEXT.replace(" and ", " "), TEXT.replace(" au ", " "), TEXT.replace(" in ", " "),
                       TEXT.replace(" my ", " ")}
    assert edited("bakery", "stop word dropped", 0, 0) is None
    assert edited("retail bakery", "stop word added", 0, 0) in {"the retail bakery", "retail the bakery"}


def test_word_order_applies_only_to_two_word_queries():
    assert edited("retail bakery", "word order (two words)", 0, 0) == "bakery retail"
    assert edited(TEXT, "word order (two words)", 0, 0) is None
    assert edited("bakery", "word order (two words)", 0, 0) is None


def test_the_sample_is_seeded_and_in_row_order():
    first = sample_rows(100, 10, 1)
    assert list(first) == sorted(first) and len(set(first)) == 10
    assert list(first) == list(sample_rows(100, 10, 1)) and list(first) != list(sample_rows(100, 10, 2))
    assert list(sample_rows(5, 10, 1)) == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def classifier(bag_model_dir, tiny_frame):
    return Classifier(load_model(bag_model_dir, lambda: tiny_frame["code"].to_list()))


def test_the_report_counts_each_edit_and_lists_every_flip(classifier, tiny_frame):
    texts = tiny_frame["label"].to_list()[:60] + ["retail bakery", "software development"]
    truth = tiny_frame["code"].to_list()[:60] + ["47.24", "62.10"]
    predicted = [classifier.labels[i] for i in classifier.predict_proba(texts).argmax(1)]
    report = robustness_report(classifier, texts, truth, predicted, seed=0, rows=50)
    again = robustness_report(classifier, texts, truth, predicted, seed=0, rows=50)
    assert report.summary.equals(again.summary) and report.flips.equals(again.flips)
    assert report.rows == 50 and report.summary["edit"].to_list() == list(EDITS)
    for line in report.summary.iter_rows(named=True):
        flips = report.flips.filter(pl.col("edit") == line["edit"])
        assert line["unchanged"] + flips.height == line["rows"] <= 50
        assert line["same_tokens"] <= line["unchanged"]  # an edit the tokenizer undoes cannot change the code
    for flip in report.flips.iter_rows(named=True):
        assert flip["code_before"] == predicted[flip["row"]] != flip["code_after"]
        assert flip["edited_text"] == edited(texts[flip["row"]], flip["edit"], 0, flip["row"])
        recoded = classifier.labels[classifier.predict_proba([flip["edited_text"]]).argmax()]
        assert recoded == flip["code_after"]
