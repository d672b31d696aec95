"""Sessions share one Classifier: explanations and predictions running at once give what they give alone."""

import threading

import numpy as np
import pytest

from nace_app.explain.attributions import integrated_gradients
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from tests.conftest import run_concurrently

TEXTS = ["I sell croissants and pains au chocolat in my bakery", "we rent out holiday cottages by the week",
         "software development, apps & websites!", "taxi driver with my own car", "repair of cars and vans",
         "dog grooming salon with a small pet shop"]
ROUNDS = 2  # six threads twice each: enough to interleave them; more rounds only cost time (an attention model's IG)


@pytest.fixture(scope="module", params=["embedded", "attention"])
def classifier(request, attention_model_dir, tiny_frame):
    from nace_app.sources.resolve import embedded_model_dir

    folder = {"embedded": embedded_model_dir(), "attention": attention_model_dir}[request.param]
    return Classifier(load_model(folder, lambda: tiny_frame["code"].to_list()))


def top_two(classifier, text):
    return [c.code for c in classifier.predict([text], top_k=2)[0].candidates]


def explain(classifier, text):
    return [e.token_scores for e in integrated_gradients(classifier, text, top_two(classifier, text))]


def in_threads(work, count):
    """`work(i)` in `count` threads started together; their results by index, and any exception raised again."""
    start, results, failures = threading.Barrier(count), [None] * count, []

    def run(i):
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:  # re-raised below, in the test's thread
            failures.append(exc)

    run_concurrently([threading.Thread(target=run, args=(i,)) for i in range(count)], timeout=300)
    if failures:
        raise failures[0]
    return results


def test_explanations_of_different_texts_at_once_equal_the_ones_made_alone(classifier):
    alone = {text: explain(classifier, text) for text in TEXTS}
    results = in_threads(lambda i: [explain(classifier, TEXTS[i]) for _ in range(ROUNDS)], len(TEXTS))
    for text, rounds in zip(TEXTS, results, strict=True):
        for scores in rounds:
            assert all(np.array_equal(got, want) for got, want in zip(scores, alone[text], strict=True))


def test_a_library_forward_explanation_leaves_other_sessions_predictions_alone(library_forward_classifier):
    classifier = library_forward_classifier
    texts = TEXTS[:4]
    probabilities = classifier.predict_proba(texts)
    explanations = explain(classifier, texts[0])

    def session(i):
        if i % 2 == 0:
            return [explain(classifier, texts[0]) for _ in range(ROUNDS)]
        return [classifier.predict_proba(texts) for _ in range(ROUNDS * 4)]

    results = in_threads(session, 4)
    for i, rounds in enumerate(results):
        for result in rounds:
            if i % 2 == 0:
                assert all(np.array_equal(got, want) for got, want in zip(result, explanations, strict=True))
            else:
                assert np.array_equal(result, probabilities)
