"""The embedding map: PCA by SVD (shape, variance order, signs), its disk cache, and nearest words."""

import numpy as np
import pytest

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.review.embedding_map import WordSpace, pca_2d, rows_map, vocabulary
from nace_app.review.neighbours import sentence_embeddings


def test_pca_gives_two_axes_largest_variance_first():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 5)) * np.array([10.0, 1.0, 4.0, 0.5, 0.1])
    projection = pca_2d(points.astype(np.float32))
    assert projection.coordinates.shape == (300, 2)
    first, second = projection.explained_variance
    assert first > second > 0 and first + second <= 1
    assert np.var(projection.coordinates[:, 0]) > np.var(projection.coordinates[:, 1])
    np.testing.assert_allclose(np.abs(np.corrcoef(projection.coordinates[:, 0], points[:, 0])[0, 1]), 1, atol=0.01)
    total = np.var(points, axis=0).sum()
    np.testing.assert_allclose(np.var(projection.coordinates, axis=0) / total, projection.explained_variance,
                               rtol=1e-4)


def test_pca_does_not_depend_on_row_order_and_fixes_each_axis_sign():
    points = np.random.default_rng(1).normal(size=(50, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    order = np.random.default_rng(2).permutation(50)
    np.testing.assert_allclose(pca_2d(points[order]).coordinates, pca_2d(points).coordinates[order], atol=1e-5)
    np.testing.assert_allclose(pca_2d(-points).coordinates, -pca_2d(points).coordinates, atol=1e-5)


def test_pca_of_too_few_rows_or_dimensions():
    assert pca_2d(np.zeros((0, 8))).coordinates.shape == (0, 2)
    one = pca_2d(np.ones((1, 8)))
    assert one.coordinates.shape == (1, 2) and not one.explained_variance.any()
    line = pca_2d(np.arange(10.0)[:, None])
    assert line.coordinates.shape == (10, 2) and line.explained_variance[0] == pytest.approx(1)


def test_vocabulary_keeps_frequent_words():
    assert vocabulary(["Bakery and cakes", "bakery, bread", "cakes 123 bread", "once"], 2) == ["bakery", "bread"]


@pytest.fixture(scope="module")
def classifier(bag_model_dir, tiny_frame):
    return Classifier(load_model(bag_model_dir, lambda: tiny_frame["code"].to_list()))


def test_the_map_is_computed_once_then_read_from_disk(classifier, tiny_frame, tmp_path, monkeypatch):
    first = rows_map(classifier, tiny_frame, tmp_path)
    assert first.coordinates.shape == (tiny_frame.height, 2)
    expected = pca_2d(sentence_embeddings(classifier, tiny_frame["label"].to_list()))
    np.testing.assert_allclose(first.coordinates, expected.coordinates, atol=1e-5)
    assert len(list((tmp_path / "embedding_map").glob("*.npz"))) == 1

    import nace_app.review.embedding_map as module

    monkeypatch.setattr(module, "sentence_embeddings", lambda *a, **k: pytest.fail("recomputed"))
    np.testing.assert_array_equal(rows_map(classifier, tiny_frame, tmp_path).coordinates, first.coordinates)


def test_nearest_words_are_the_closest_other_words(classifier, tiny_frame, tmp_path):
    space = WordSpace.build(classifier, tiny_frame, tmp_path)
    nearest = space.nearest("bakery", 5)
    assert len(nearest) == 5 and "bakery" not in [w for w, _ in nearest]
    similarities = [s for _, s in nearest]
    assert similarities == sorted(similarities, reverse=True)
    query = sentence_embeddings(classifier, ["bakery"])[0]
    every = sorted(((float(e @ query), w) for w, e in zip(space.words, space.embeddings, strict=True)
                    if w != "bakery"), reverse=True)
    assert [w for _, w in every[:5]] == [w for w, _ in nearest]
    again = WordSpace.build(classifier, tiny_frame, tmp_path)
    assert again.words == space.words and space.nearest("") == []
