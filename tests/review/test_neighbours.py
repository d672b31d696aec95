"""Similar labelled examples: the head's own sentence embedding, exact nearest rows, and the on-disk cache."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.model.forward import pad
from nace_app.review.neighbours import NeighbourIndex, sentence_embeddings

QUERIES = ["I sell croissants and pains au chocolat in my bakery", "software development, apps & websites!",
           "repair of cars and vans", "a small hotel by the sea", "dentist"]


@pytest.fixture(scope="module", params=["bag", "attention"])
def classifier(request, bag_model_dir, attention_model_dir, tiny_frame):
    folder = {"bag": bag_model_dir, "attention": attention_model_dir}[request.param]
    return Classifier(load_model(folder, lambda: tiny_frame["code"].to_list()))


def library_embeddings(classifier: Classifier, texts: list[str]) -> np.ndarray:
    """The library's own modules on the fully padded input, normalised: the reference, independent of our cut path."""
    encoded = classifier.encode(texts)
    input_ids, mask = pad(encoded.ids, encoded.full_width, encoded.pad_id)
    with torch.inference_mode():
        tokens = classifier.model.token_embedder(input_ids, mask)["token_embeddings"]
        sentences = classifier.model.sentence_embedder(tokens, mask)["sentence_embedding"].double().numpy()
    return sentences / np.linalg.norm(sentences, axis=1, keepdims=True)


def test_sentence_embedding_is_what_the_classification_head_reads(classifier):
    embeddings = sentence_embeddings(classifier, QUERIES, chunk_size=2)
    scale = math.sqrt(embeddings.shape[1])  # the head's RMS norm of a unit vector
    with torch.inference_mode():
        logits = classifier.model.classification_head(torch.from_numpy(embeddings * scale)).numpy()
    np.testing.assert_allclose(logits, classifier.logits(QUERIES), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_sentence_embedding_equals_the_library_forward_on_fully_padded_input(classifier):
    np.testing.assert_allclose(sentence_embeddings(classifier, QUERIES), library_embeddings(classifier, QUERIES), atol=1e-5)


def test_nearest_rows_match_a_brute_force_cosine_search(classifier, tiny_frame, tmp_path):
    index = NeighbourIndex.build(classifier, tiny_frame, tmp_path)
    rows = library_embeddings(classifier, tiny_frame["label"].to_list())
    for query, query_vector in zip(QUERIES, library_embeddings(classifier, QUERIES), strict=True):
        similarity = rows @ query_vector  # every row scored: exhaustive search
        expected = np.argsort(-similarity, kind="stable")[:5]
        found = index.nearest(query, k=5)
        np.testing.assert_allclose([n.similarity for n in found], similarity[expected], atol=1e-5)
        row_of = {text: i for i, text in enumerate(tiny_frame["label"].to_list())}
        for neighbour in found:  # rows of equal similarity may come in either order: check each row's own facts
            row = row_of[neighbour.text]
            assert abs(similarity[row] - neighbour.similarity) < 1e-5
            assert (neighbour.code, neighbour.heading) == (tiny_frame["code"][row], tiny_frame["name"][row])


def test_second_build_reads_the_cached_embeddings_instead_of_recomputing(bag_model_dir, tiny_frame, tmp_path):
    classifier = Classifier(load_model(bag_model_dir))
    calls = []
    first = NeighbourIndex.build(classifier, tiny_frame, tmp_path, progress=lambda done, total: calls.append(done))
    assert not first.loaded_from_cache and calls[-1] == tiny_frame.height
    written = first.cache_path.stat().st_mtime_ns
    calls.clear()
    second = NeighbourIndex.build(classifier, tiny_frame, tmp_path, progress=lambda done, total: calls.append(done))
    assert second.loaded_from_cache and calls == []
    assert second.cache_path == first.cache_path and second.cache_path.stat().st_mtime_ns == written
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert list(first.cache_path.parent.iterdir()) == [first.cache_path]  # no temporary file left behind


def test_other_data_gets_its_own_cache_entry(bag_model_dir, tiny_frame, tmp_path):
    classifier = Classifier(load_model(bag_model_dir))
    whole = NeighbourIndex.build(classifier, tiny_frame, tmp_path)
    part = NeighbourIndex.build(classifier, tiny_frame.head(50), tmp_path)
    assert part.cache_path != whole.cache_path and not part.loaded_from_cache
    assert part.embeddings.shape[0] == 50


def test_a_damaged_cache_file_is_recomputed(bag_model_dir, tiny_frame, tmp_path):
    classifier = Classifier(load_model(bag_model_dir))
    path = NeighbourIndex.build(classifier, tiny_frame, tmp_path).cache_path
    path.write_bytes(b"not an array")
    rebuilt = NeighbourIndex.build(classifier, tiny_frame, tmp_path)
    assert not rebuilt.loaded_from_cache
    assert np.load(path).shape == rebuilt.embeddings.shape


def test_asking_for_more_neighbours_than_rows_gives_every_row_once(bag_model_dir, tiny_frame, tmp_path):
    classifier = Classifier(load_model(bag_model_dir))
    small = tiny_frame.head(7).drop("name")
    index = NeighbourIndex.build(classifier, small, tmp_path)
    found = index.nearest("bakery", k=20)
    assert sorted(n.text for n in found) == sorted(small["label"].to_list())
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
    assert found[0].heading == classifier.nomenclature.heading(found[0].code)  # no name column: the official one
    assert index.nearest("bakery", k=0) == []
    assert isinstance(pl.DataFrame([vars(n) for n in found]), pl.DataFrame)
