"""Our inference equals the library's: same top-k order, probabilities within 1e-5 of a full-precision softmax."""

import numpy as np
import pytest
import torch

from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model, save_model
from nace_app.settings.errors import NaceAppError

MIXED_TEXTS = [
    "bread",
    "we bake bread and cakes every morning " * 30,  # longer than the attention model's 125-token window
    "I sell croissants and pains au chocolat in my bakery",
    "Wholesale of coffee, tea, cocoa and spices to hotels, restaurants and caterers across the whole region " * 3,
    "",
    "日本語のテキスト 🍞",
    "<script>alert(1)</script> software",
]


def library_probabilities(ttc, texts, temperature: float = 1.0):
    """The library model's logits on exactly the inputs its predict() builds, divided by the model's temperature
    (1 unless its folder has calibration.json) and softmaxed in float64."""
    tokens = ttc.tokenizer.tokenize(texts)
    with torch.no_grad():
        logits = ttc.pytorch_model(tokens.input_ids, tokens.attention_mask, torch.empty((len(texts), 0)))
    return torch.softmax(logits.double() / temperature, dim=1).numpy()


@pytest.fixture(scope="module", params=["bag", "attention", "ngram"])
def loaded(request, bag_model_dir, attention_model_dir, ngram_model_dir, tiny_frame):
    folder = {"bag": bag_model_dir, "attention": attention_model_dir, "ngram": ngram_model_dir}[request.param]
    return load_model(folder, lambda: tiny_frame["code"].to_list())


@pytest.mark.parametrize("chunk_size", [1, 3, 512])
def test_probabilities_and_top_k_equal_the_library(loaded, tiny_frame, chunk_size):
    texts = MIXED_TEXTS + tiny_frame["label"].to_list()[:50]
    classifier = Classifier(loaded)
    ours = classifier.predict_proba(texts, chunk_size=chunk_size)
    reference = library_probabilities(loaded.ttc, texts)
    assert np.abs(ours - reference).max() < 1e-5
    library = loaded.ttc.predict(np.asarray(texts), top_k=5)
    indices, _ = classifier.top_k(ours, 5)
    assert np.array_equal(indices, library["prediction"].numpy() if loaded.ttc.value_encoder is None
                          else np.vectorize(classifier.label_index.get)(library["prediction"]))


def test_attention_model_outputs_depend_on_padding_so_cutting_needs_the_padding_keys(attention_model_dir, tiny_frame):
    loaded = load_model(attention_model_dir, lambda: tiny_frame["code"].to_list())
    model = loaded.ttc.pytorch_model.eval()
    tokens = loaded.ttc.tokenizer.tokenize(["I sell bread"])
    length = int(tokens.attention_mask.sum())
    with torch.no_grad():
        full = model(tokens.input_ids, tokens.attention_mask, torch.empty((1, 0)))
        cut = model(tokens.input_ids[:, :length], tokens.attention_mask[:, :length], torch.empty((1, 0)))
    assert (full - cut).abs().max() > 1e-4  # naive trimming would change the answer
    assert Classifier(loaded).forward.can_cut and Classifier(loaded).forward.self_attention


def test_own_format_round_trip_is_identical_and_never_unpickles(loaded, tmp_path, monkeypatch, tiny_frame):
    import pickle

    texts = tiny_frame["label"].to_list()[:20]
    before = Classifier(loaded).predict_proba(texts)
    folder = save_model(loaded.ttc, loaded.labels, tmp_path / "own")
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    reloaded = Classifier(load_model(folder))
    assert np.abs(reloaded.predict_proba(texts) - before).max() < 1e-6
    assert reloaded.labels == loaded.labels


def test_half_precision_weights_halve_the_file_and_barely_move_probabilities(loaded, tmp_path, tiny_frame):
    texts = tiny_frame["label"].to_list()[:60]
    full = Classifier(loaded)
    half = Classifier(load_model(save_model(loaded.ttc, loaded.labels, tmp_path / "half", half_precision=True)))
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * sum(
        t.numel() * 4 for t in loaded.ttc.pytorch_model.state_dict().values())
    before, after = full.predict_proba(texts), half.predict_proba(texts)
    assert np.abs(before - after).max() < 5e-3
    ordered = np.sort(before, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2e-3  # only near-ties may swap the best code
    assert clear.any() and np.array_equal(before.argmax(1)[clear], after.argmax(1)[clear])


def test_unsupported_architecture_falls_back_to_the_plain_forward(library_forward_classifier, tiny_frame):
    texts = tiny_frame["label"].to_list()[:12]
    assert np.abs(library_forward_classifier.predict_proba(texts, chunk_size=5)
                  - library_probabilities(library_forward_classifier.loaded.ttc, texts)).max() < 1e-5


def test_top_k_out_of_range_is_a_user_error(loaded):
    classifier = Classifier(loaded)
    with pytest.raises(NaceAppError):
        classifier.predict(["x"], top_k=0)
    with pytest.raises(NaceAppError):
        classifier.predict(["x"], top_k=classifier.num_classes + 1)


def test_unknown_token_share(loaded):
    classifier = Classifier(loaded)
    assert classifier.unknown_token_share("日本語 🍞🍞") > 0.5
    assert classifier.unknown_token_share("bread bakery") < 0.5


def with_calibration(folder, tmp_path, temperature: float):
    """A copy of a model folder of ours with a calibration.json at `temperature`."""
    import json
    import shutil

    copy = shutil.copytree(folder, tmp_path / f"calibrated-{temperature}")
    (copy / "calibration.json").write_text(json.dumps({"temperature": temperature, "rows": 0, "fitted_on": "a test",
                                                       "scores": []}))
    return copy


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_every_probability_is_the_softmax_of_the_logits_over_the_temperature_on_both_paths(loaded, tmp_path, tiny_frame,
                                                                                           temperature):
    from nace_app.explain.attributions import integrated_gradients, occlusion

    texts = MIXED_TEXTS + tiny_frame["label"].to_list()[:20]
    plain = Classifier(load_model(save_model(loaded.ttc, loaded.labels, tmp_path / "own")))
    calibrated = Classifier(load_model(with_calibration(tmp_path / "own", tmp_path, temperature)))
    assert (calibrated.numpy_forward is None) == (plain.numpy_forward is None)  # numpy path (bag, ngram), torch (attention)
    reference = torch.softmax(torch.from_numpy(library_probabilities(loaded.ttc, texts)).log() / temperature, dim=1).numpy()
    assert calibrated.temperature == temperature
    assert np.abs(calibrated.predict_proba(texts) - reference).max() < 1e-5
    if temperature == 1.0:  # today's figures, and the caches keyed as before
        assert np.abs(calibrated.predict_proba(texts) - plain.predict_proba(texts)).max() < 1e-12
        assert calibrated.fingerprint == plain.fingerprint
    else:
        assert calibrated.fingerprint != plain.fingerprint and calibrated.weights_fingerprint == plain.weights_fingerprint
    assert np.array_equal(calibrated.predict_top_k(texts, 5).codes, plain.predict_top_k(texts, 5).codes)  # order kept
    code = calibrated.predict_top_k([texts[2]], 1).codes[0, 0]
    shown = calibrated.predict_proba([texts[2]])[0, calibrated.label_index[code]]
    assert integrated_gradients(calibrated, texts[2], [code])[0].probability == pytest.approx(shown, abs=1e-5)
    words = integrated_gradients(calibrated, texts[2], [code])[0].words
    variant = " ".join(w.word for w in words[1:])
    drop = occlusion(calibrated, texts[2], words, [code])[code][0]
    assert drop == pytest.approx(shown - calibrated.predict_proba([variant])[0, calibrated.label_index[code]], abs=1e-5)


def test_a_damaged_calibration_json_is_refused_in_one_line(bag_model_dir, tmp_path, loaded):
    folder = save_model(loaded.ttc, loaded.labels, tmp_path / "own")
    (folder / "calibration.json").write_text('{"temperature": -1}')
    with pytest.raises(NaceAppError, match="temperature must be positive"):
        load_model(folder)
    (folder / "calibration.json").write_text("not json")
    with pytest.raises(NaceAppError, match="cannot read"):
        load_model(folder)
