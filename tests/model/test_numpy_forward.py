"""The numpy forward pass equals the library's torch forward for both tokenizers, and predicting needs no torch."""

import numpy as np
import pytest

from nace_app.model.classifier import Classifier
from nace_app.model.formats import LoadedModel, load_model, save_model
from nace_app.sources.resolve import embedded_model_dir
from tests.model.test_classifier import MIXED_TEXTS, library_probabilities

VARIED_TEXTS = MIXED_TEXTS + ["Café-bar à Lyon, plombier 24/7 !!", "RÉPARATION d'ÉLECTROMÉNAGER", "e\u0301clair",
                              "3D printing & CNC 2024", "🍞🥐", "   ", "a", "ﬁsh & chips"]


def own_copy(library_dir, folder, tiny_frame, output_dim=None, half_precision=False):
    """A library-trained mean-pooling model saved in our format, optionally with a shorter window."""
    loaded = load_model(library_dir, lambda: tiny_frame["code"].to_list())
    loaded.ttc.tokenizer.output_dim = output_dim
    return save_model(loaded.ttc, loaded.labels, folder, half_precision=half_precision)


@pytest.mark.parametrize("output_dim", [None, 6])
@pytest.mark.parametrize("library_dir", ["bag_model_dir", "ngram_model_dir"])  # WordPiece, n-grams
def test_numpy_probabilities_and_top_k_equal_the_library_for_both_tokenizers(library_dir, output_dim, request,
                                                                              tiny_frame, tmp_path):
    folder = own_copy(request.getfixturevalue(library_dir), tmp_path / "own", tiny_frame, output_dim)
    texts = VARIED_TEXTS + tiny_frame["label"].to_list()[:60]
    loaded = load_model(folder)
    classifier = Classifier(loaded)
    ours = classifier.predict_proba(texts, chunk_size=7)
    assert classifier.numpy_forward is not None and loaded.library is None  # predicted without the library model
    reference = library_probabilities(loaded.ttc, texts)
    assert np.abs(ours - reference).max() < 1e-5
    library = loaded.ttc.predict(np.asarray(texts), top_k=5)["prediction"].numpy()
    assert np.array_equal(classifier.top_k(ours, 5)[0], library)


def test_embedded_model_half_precision_weights_give_the_torch_probabilities():
    loaded = load_model(embedded_model_dir())
    texts = VARIED_TEXTS + ["plumber", "we bake bread and sell cakes", "software development for banks"]
    classifier = Classifier(loaded)
    ours = classifier.predict_proba(texts)
    assert loaded.library is None and classifier.temperature != 1.0  # the embedded model ships calibration.json
    reference = library_probabilities(loaded.ttc, texts, classifier.temperature)
    assert np.abs(ours - reference).max() < 1e-5
    assert np.array_equal(Classifier(loaded).top_k(ours, 5)[0], loaded.ttc.predict(np.asarray(texts), top_k=5)["prediction"].numpy())
    torch_read = Classifier(LoadedModel(loaded.ttc, loaded.labels, "nace-explorer", "labels.json",
                                       calibration=loaded.calibration))
    assert torch_read.numpy_forward is None and torch_read.fingerprint == Classifier(loaded).fingerprint  # caches stay valid


def test_numpy_and_torch_paths_share_a_fingerprint_and_sentence_embeddings(bag_model_dir, tiny_frame, tmp_path):
    from nace_app.review.neighbours import sentence_embeddings

    library = Classifier(load_model(bag_model_dir))
    own = Classifier(load_model(own_copy(bag_model_dir, tmp_path / "own", tiny_frame)))
    assert own.numpy_forward is not None and library.numpy_forward is None
    assert own.fingerprint == library.fingerprint
    texts = VARIED_TEXTS + tiny_frame["label"].to_list()[:30]
    assert np.abs(sentence_embeddings(own, texts) - sentence_embeddings(library, texts)).max() < 1e-5
    assert own.loaded.library is None


def test_explanations_build_our_torch_model_on_demand_and_never_the_librarys(ngram_model_dir, tiny_frame, tmp_path):
    from nace_app.explain.attributions import integrated_gradients
    from nace_app.model.mean_pool import MeanPoolModel

    classifier = Classifier(load_model(own_copy(ngram_model_dir, tmp_path / "own", tiny_frame)))
    code = classifier.predict(["I sell bread"], top_k=1)[0].candidates[0].code
    assert classifier._torch_parts is None
    explanation = integrated_gradients(classifier, "I sell bread", [code])[0]
    assert type(classifier.model) is MeanPoolModel and classifier.loaded.library is None and explanation.words


def test_attention_models_in_our_format_keep_the_torch_forward(attention_model_dir, tiny_frame, tmp_path):
    folder = own_copy(attention_model_dir, tmp_path / "own", tiny_frame, output_dim=125)
    loaded = load_model(folder)
    classifier = Classifier(loaded)
    assert classifier.numpy_forward is None and loaded.library is not None
    texts = tiny_frame["label"].to_list()[:20]
    assert np.abs(classifier.predict_proba(texts) - library_probabilities(loaded.ttc, texts)).max() < 1e-5


def test_weights_of_another_shape_than_the_configuration_are_a_user_error(ngram_model_dir, tiny_frame, tmp_path):
    import json

    from nace_app.settings.errors import NaceAppError

    folder = own_copy(ngram_model_dir, tmp_path / "own", tiny_frame)
    config = json.loads((folder / "config.json").read_text())
    config["model_config"]["num_classes"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NaceAppError, match="model.safetensors"):
        load_model(folder)
