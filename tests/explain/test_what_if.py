"""What if: the word diff of an edit, and each code's probability before and after (one model or two)."""

import numpy as np
import pytest

from nace_app.explain.what_if import WordChange, compare_probabilities, two_models, what_if, without_word, word_changes
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model

TEXT = "I sell croissants and pains au chocolat in my bakery"


def test_word_changes_name_what_was_removed_added_or_replaced():
    assert word_changes(TEXT, TEXT) == []
    assert word_changes(TEXT, TEXT.replace(" in my bakery", "")) == [WordChange("removed", "in my bakery", "")]
    assert word_changes("retail bakery", "retail bakery shop") == [WordChange("added", "", "shop")]
    assert word_changes("retail bakery", "wholesale bakery")[0].sentence() == "“retail” → “wholesale”"


def test_a_word_is_removed_once_with_its_space():
    assert without_word("bread and cakes and tea", "and") == "bread cakes and tea"
    assert without_word("bakery", "bakery") == "" and without_word("bakery", "cafe") == "bakery"


def test_the_comparison_holds_both_top_k_and_the_change():
    labels = ["a", "b", "c", "d"]
    before, after = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.1, 0.2, 0.6, 0.1])
    frame = compare_probabilities(labels, before, after, 2, ["A", "B", "C", "D"])
    assert frame["code"].to_list() == ["c", "a", "b"]  # a, b top-2 before; c, b after; by the larger probability
    row = frame.row(0, named=True)
    assert row["rank_before"] == 3 and row["rank_after"] == 1 and row["change"] == pytest.approx(0.45)


@pytest.fixture(scope="module")
def classifier(bag_model_dir, tiny_frame):
    return Classifier(load_model(bag_model_dir, lambda: tiny_frame["code"].to_list()))


def test_what_if_matches_coding_each_text_alone(classifier):
    edited = TEXT.replace("bakery", "garage")
    frame = what_if(classifier, TEXT, edited, 3)
    before, after = classifier.predict_proba([TEXT])[0], classifier.predict_proba([edited])[0]
    for row in frame.iter_rows(named=True):
        column = classifier.label_index[row["code"]]
        assert row["probability_before"] == pytest.approx(before[column], abs=1e-6)
        assert row["change"] == pytest.approx(after[column] - before[column], abs=1e-6)
    assert classifier.labels[before.argmax()] in frame["code"].to_list()


def test_two_models_on_one_text(classifier, attention_model_dir, tiny_frame):
    second = Classifier(load_model(attention_model_dir, lambda: tiny_frame["code"].to_list()))
    frame = two_models(classifier, second, TEXT, 3)
    first_best = classifier.labels[classifier.predict_proba([TEXT])[0].argmax()]
    second_best = second.labels[second.predict_proba([TEXT])[0].argmax()]
    assert {first_best, second_best} <= set(frame["code"].to_list())
    assert frame.filter(frame["code"] == second_best)["rank_after"].item() == 1
