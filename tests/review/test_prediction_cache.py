"""Test-split probabilities are kept on disk per model and data, and a damaged file is recomputed."""

import numpy as np

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.prediction_cache import cached_probabilities


def test_probabilities_are_reused_from_disk_and_recomputed_when_damaged(bag_model_dir, tmp_path):
    classifier = Classifier(load_model(bag_model_dir))
    texts = ["bakery", "software", "taxi"]
    first = cached_probabilities(classifier, texts, "data1", tmp_path)
    files = list((tmp_path / "predictions").glob("*.npy"))
    assert len(files) == 1 and np.allclose(first, classifier.predict_proba(texts), atol=1e-6)
    np.save(files[0], np.zeros((3, classifier.num_classes), dtype=np.float32))
    assert not cached_probabilities(classifier, texts, "data1", tmp_path).any()  # read back, not recomputed
    files[0].write_bytes(b"not a numpy file")
    assert np.allclose(cached_probabilities(classifier, texts, "data1", tmp_path), first)
    cached_probabilities(classifier, texts, "data2", tmp_path)
    assert len(list((tmp_path / "predictions").glob("*.npy"))) == 2  # keyed by the data fingerprint too
