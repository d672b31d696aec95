"""The warm-up's disk caches, filled by a child process for a mean-pooling model, equal what the server computes."""

import pickle
import threading

import numpy as np

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.disk_caches import fill_disk_caches
from nace_app.review.neighbours import NeighbourIndex
from nace_app.review.prediction_cache import cached_probabilities
from nace_app.sources.resolve import embedded_model_dir


def test_a_mean_pooling_classifier_travels_to_another_process_with_its_fingerprint_and_answers():
    classifier = Classifier(load_model(embedded_model_dir()))
    assert classifier.calibration is not None  # its calibration.json: the copy must keep the temperature
    copy = pickle.loads(pickle.dumps(classifier))
    assert copy.fingerprint == classifier.fingerprint and copy.temperature == classifier.temperature
    texts = ["I bake bread", "we repair cars"]
    assert np.array_equal(copy.predict_proba(texts), classifier.predict_proba(texts))


def test_the_child_fills_the_same_caches_the_server_reads_and_says_when_the_rows_are_embedded(tiny_frame, tmp_path):
    classifier = Classifier(load_model(embedded_model_dir()))
    test_texts = tiny_frame["label"].to_list()[:50]
    lock, events = threading.Lock(), []
    fill_disk_caches(classifier, tiny_frame, test_texts, "tiny", tmp_path, embedding=lock,
                     embedded=lambda: events.append(lock.locked()))
    assert events == [False]  # called once, after the embedding lock was released
    index = NeighbourIndex.build(classifier, tiny_frame, tmp_path)
    assert index.loaded_from_cache  # the child's file, read back
    fresh = NeighbourIndex.build(classifier, tiny_frame, tmp_path / "elsewhere")
    assert np.allclose(index.embeddings, fresh.embeddings, atol=1e-6)
    scores = cached_probabilities(classifier, test_texts, "tiny", tmp_path)
    assert np.allclose(scores, classifier.predict_proba(test_texts), atol=1e-6)
    assert len(list((tmp_path / "predictions").glob("*.npy"))) == 1


def test_a_restarted_server_finding_both_files_starts_no_child_and_one_missing_file_is_written_again(
        tiny_frame, tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    from nace_app.review import disk_caches, prediction_cache

    classifier = Classifier(load_model(embedded_model_dir()))
    test_texts = tiny_frame["label"].to_list()[:50]
    NeighbourIndex.build(classifier, tiny_frame, tmp_path)
    cached_probabilities(classifier, test_texts, "tiny", tmp_path)
    children = []
    monkeypatch.setattr(disk_caches, "ProcessPoolExecutor",
                        lambda **options: children.append(options) or ProcessPoolExecutor(**options))
    events = []

    def fill() -> None:
        fill_disk_caches(classifier, tiny_frame, test_texts, "tiny", tmp_path, embedding=threading.Lock(),
                         embedded=lambda: events.append("embedded"))

    fill()
    assert events == ["embedded"] and children == []
    scores = prediction_cache.cache_file(classifier, len(test_texts), "tiny", tmp_path)
    scores.unlink()
    fill()
    assert events == ["embedded", "embedded"] and len(children) == 1 and scores.is_file()
