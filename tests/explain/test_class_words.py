"""Per-class words on a real tiny model: batched explanations, the two kinds of scores, ranking and the cache."""

import numpy as np
import polars as pl
import pytest

from nace_app.data.tables import split
from nace_app.explain.attributions import integrated_gradients
from nace_app.explain.class_words import PULLS_AWAY, TOWARD, all_class_words, class_words, explain_texts, top_class_words
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model

TEXTS = ["I sell croissants and pains au chocolat in my bakery", "software development, apps & websites!",
         "Repair of cars, repair of vans", "hotel", "we grow wheat and barley on our farm and sell it to mills nearby"]


@pytest.fixture(scope="module")
def classifier(bag_model_dir):
    return Classifier(load_model(bag_model_dir))


@pytest.fixture(scope="module")
def attention_classifier(attention_model_dir, tiny_frame):
    return Classifier(load_model(attention_model_dir, lambda: tiny_frame["code"].to_list()))


@pytest.fixture(scope="module")
def test_split(tiny_frame):
    return split(tiny_frame).test


def word_scores(explanation) -> dict[str, float]:
    scores: dict[str, float] = {}
    for word in explanation.words:
        if any(char.isalnum() for char in word.word):
            scores[word.word.lower()] = scores.get(word.word.lower(), 0.0) + word.score
    return scores


@pytest.mark.parametrize("model", ["bag", "attention"])
def test_batched_explanations_equal_the_one_text_function(model, classifier, attention_classifier):
    chosen = {"bag": classifier, "attention": attention_classifier}[model]
    texts = TEXTS if model == "bag" else [TEXTS[0], TEXTS[4]]  # attention needs up to 512 steps: keep it short
    top = chosen.predict_top_k(texts, top_k=3).codes.tolist()
    codes = [top[i][:1] if i % 2 else [top[i][0], top[i][2]] for i in range(len(texts))]
    batched = explain_texts(chosen, texts, codes)
    for text, text_codes, explanations in zip(texts, codes, batched, strict=True):
        for alone, together in zip(integrated_gradients(chosen, text, text_codes), explanations, strict=True):
            assert (together.code, together.steps, together.offsets) == (alone.code, alone.steps, alone.offsets)
            assert [(w.word, w.start, w.end) for w in together.words] == [(w.word, w.start, w.end) for w in alone.words]
            np.testing.assert_allclose(together.token_scores, alone.token_scores, atol=1e-5)
            assert together.logit_delta == pytest.approx(alone.logit_delta, abs=1e-5)
            assert together.probability == pytest.approx(alone.probability, abs=1e-6)


def test_toward_is_the_mean_attribution_to_the_true_code_over_the_class_rows(classifier):
    texts = ["I sell croissants and cakes", "Bakery: bread, cakes and CAKES", "my bakery sells bread"]
    test = pl.DataFrame({"code": ["10.71"] * 3, "label": texts})
    per_row = [word_scores(integrated_gradients(classifier, text, ["10.71"])[0]) for text in texts]
    words = set().union(*per_row)
    toward = all_class_words(classifier, test).filter(pl.col("kind") == TOWARD)
    assert set(toward["code"]) == {"10.71"} and set(toward["class_rows"]) == {3}
    assert sorted(toward["word"]) == sorted(words) and "cakes" in words and ":" not in words
    for word, mean_score, rows in toward.select("word", "mean_score", "rows").iter_rows():
        assert mean_score == pytest.approx(sum(row.get(word, 0.0) for row in per_row) / 3, abs=1e-4)
        assert rows == sum(row.get(word, 0.0) > 0 for row in per_row)


def test_pulls_away_is_the_contrast_predicted_minus_true_on_misclassified_rows(classifier):
    text, wrong_label = "I sell croissants and cakes in my bakery", "62.10"
    predicted = classifier.predict([text], top_k=1)[0].candidates[0].code
    assert predicted != wrong_label  # the row is misclassified by construction
    truth, prediction = integrated_gradients(classifier, text, [wrong_label, predicted])
    contrast = {w: word_scores(prediction)[w] - s for w, s in word_scores(truth).items()}
    away = all_class_words(classifier, pl.DataFrame({"code": [wrong_label], "label": [text]})).filter(
        pl.col("kind") == PULLS_AWAY)
    assert dict(zip(away["word"], away["mean_score"], strict=True)) == pytest.approx(contrast, abs=1e-4)
    assert away.filter(pl.col("mean_score") > 0)["wrong_code"].unique().to_list() == [predicted]
    assert away["rows"].to_list() == [int(contrast[w] > 0) for w in away["word"]]


def test_correctly_coded_rows_give_no_pulls_away_words(classifier):
    text = "I sell croissants and cakes in my bakery"
    predicted = classifier.predict([text], top_k=1)[0].candidates[0].code
    words = all_class_words(classifier, pl.DataFrame({"code": [predicted], "label": [text]}))
    assert set(words["kind"]) == {TOWARD}


def test_the_table_keeps_the_best_words_of_each_class_and_kind(classifier, test_split, tmp_path):
    table = class_words(classifier, test_split, tmp_path, per_class=3)
    assert table.columns == ["code", "kind", "rank", "word", "mean_score", "rows", "class_rows", "wrong_code"]
    assert set(table["kind"]) <= {TOWARD, PULLS_AWAY} and set(table["code"]) <= set(test_split["code"])
    assert table.group_by("code", "kind").len()["len"].max() <= 3
    assert (table["mean_score"] > 0).all()
    assert all(word == word.lower() and any(c.isalnum() for c in word) for word in table["word"])
    for (_, kind), group in table.group_by("code", "kind"):
        key = "mean_score" if kind == TOWARD else "rows"
        assert group.sort("rank")[key].to_list() == sorted(group[key].to_list(), reverse=True)
        assert group["wrong_code"].is_null().all() == (kind == TOWARD)


def test_function_words_are_left_out_of_the_words_that_pull_rows_away_but_not_of_those_that_drive_a_class():
    words = pl.DataFrame({"code": ["10.71"] * 4, "kind": [PULLS_AWAY, PULLS_AWAY, PULLS_AWAY, TOWARD],
                          "word": ["and", "to", "shop", "and"], "mean_score": [0.9, 0.8, 0.1, 0.5], "rows": [9, 8, 1, 9],
                          "class_rows": [10, 10, 10, 20], "wrong_code": ["47.24", "47.24", "47.24", None]})
    table = top_class_words(words)
    assert table.filter(pl.col("kind") == PULLS_AWAY)["word"].to_list() == ["shop"]
    assert table.filter(pl.col("kind") == TOWARD)["word"].to_list() == ["and"]


def test_second_call_reads_the_parquet_cache_without_explaining_again(classifier, test_split, tmp_path):
    calls = []
    first = class_words(classifier, test_split, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (test_split.height, test_split.height)
    [cached] = (tmp_path / "class_words").iterdir()
    assert cached.suffix == ".parquet" and classifier.fingerprint in cached.name
    calls.clear()
    second = class_words(classifier, test_split, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [] and second.equals(first)
    fewer = class_words(classifier, test_split, tmp_path, per_class=1)
    assert fewer.equals(first.filter(pl.col("rank") == 1))


def test_rows_whose_code_the_model_does_not_know_are_left_out(classifier, test_split):
    unknown = pl.DataFrame({"code": ["01.12"], "label": ["rice growing in paddies"]})
    words = all_class_words(classifier, pl.concat([test_split.select("code", "label"), unknown]))
    assert "01.12" not in words["code"].to_list()
    assert words.equals(all_class_words(classifier, test_split))
