"""Our torch copy of the library's mean-pooling model: the same parameters, the same logits, no library import."""

import subprocess
import sys

import pytest
import torch

from nace_app.model.formats import load_model
from nace_app.model.forward import pad
from nace_app.model.mean_pool import MeanPoolModel, model_config
from nace_app.model.tokenization import encode, train_ngram_ids

TEXTS = ["bakery selling bread and croissants", "taxi", "", "🍞", "we repair cars " * 30]


@pytest.mark.parametrize("library_dir", ["ngram_model_dir", "bag_model_dir"])
def test_logits_equal_the_library_model_holding_the_same_weights(library_dir, request, tiny_frame):
    loaded = load_model(request.getfixturevalue(library_dir), lambda: tiny_frame["code"].to_list())
    library = loaded.ttc.pytorch_model.eval()
    ours = MeanPoolModel.from_state(library.state_dict(), loaded.tokenizer.padding_idx).eval()
    encoded = encode(loaded.tokenizer, TEXTS + tiny_frame["label"].to_list()[:50])
    ids, mask = pad(encoded.ids, encoded.full_width, encoded.pad_id)
    with torch.no_grad():
        expected = library(ids, mask, None)
        assert torch.allclose(ours(ids, mask, None), expected, atol=1e-6)
        assert torch.equal(ours(ids, mask).argmax(dim=1), expected.argmax(dim=1))


def test_its_state_dict_and_config_are_the_librarys_so_either_model_loads_the_other(ngram_model_dir):
    from torchTextClassifiers import ModelConfig

    loaded = load_model(ngram_model_dir)
    library = loaded.ttc.pytorch_model
    fresh = MeanPoolModel(loaded.tokenizer.vocab_size, 32, library.num_classes, loaded.tokenizer.padding_idx)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in library.state_dict().items()}
    library.load_state_dict(fresh.state_dict())  # strict: the same names and shapes
    assert model_config(32, 7) == ModelConfig(embedding_dim=32, num_classes=7).to_dict()


def test_a_new_model_starts_as_the_librarys_does_a_zero_head_and_unit_normal_embeddings():
    torch.manual_seed(0)
    model = MeanPoolModel(5000, 64, 20, padding_idx=0)
    assert torch.count_nonzero(model.classification_head.net.weight) == 0
    weights = model.token_embedder.embedding_layer.weight.detach()
    assert abs(float(weights.std()) - 1.0) < 0.02 and abs(float(weights.mean())) < 0.02


def test_the_ngram_vocabulary_equals_the_librarys_trained_on_cleaned_text(tiny_frame):
    from torchTextClassifiers.tokenizers import NGramTokenizer
    from torchTextClassifiers.tokenizers.ngram import clean_text_feature

    texts = tiny_frame["label"].to_list() + ["Bakery, Croissants.", "RÉPARATION d'ÉLECTROMÉNAGER", ""]
    for min_count in (1, 2):
        library = NGramTokenizer(min_count=min_count, min_n=3, max_n=5, num_tokens=999, len_word_ngrams=1)
        library.train(clean_text_feature(texts))
        ours = train_ngram_ids(texts, 3, 5, 999, min_count)
        assert ours.word_to_id == library.word_to_id and ours.vocab_size == library.vocab_size


def test_the_vocabulary_is_learned_from_cleaned_text():
    ids = train_ngram_ids(["Bakery, Croissants.", "bakery croissants"], 3, 4, 100, min_count=2)
    assert set(ids.word_to_id) == {"bakery", "croissants"}  # the library alone would keep "Bakery," too


NO_LIBRARY = """
import sys
from pathlib import Path
from nace_app.data.tables import load_labelled, split
from nace_app.explain.attributions import integrated_gradients
from nace_app.model.classifier import Classifier
from nace_app.model.formats import load_model
from nace_app.sources.resolve import embedded_data_dir, embedded_model_dir
from nace_app.training.core import TrainingSettings, train_model

splits = split(load_labelled(embedded_data_dir()).head(3000))
result = train_model(splits, TrainingSettings(epochs=1, embedding_dim=16, buckets=2000), Path(sys.argv[1]))
assert result.library_dir is None and result.test.top1_accuracy >= 0
explanations = integrated_gradients(Classifier(load_model(embedded_model_dir())), "bakery selling bread", ["10.71"])
assert explanations and explanations[0].words
heavy = sorted(m for m in ("torchTextClassifiers", "lightning", "pytorch_lightning", "transformers") if m in sys.modules)
print("heavy modules:", heavy, file=sys.stderr)
"""


def test_the_default_training_run_and_explanations_never_import_the_library(tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_LIBRARY, str(tmp_path / "work")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "NACE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "heavy modules: []" in result.stderr


def test_the_flat_training_path_gives_the_padded_paths_logits_and_gradients():
    from nace_app.model.mean_pool import flat_batch

    torch.manual_seed(1)
    padded, flat = (MeanPoolModel(300, 16, 7, padding_idx=0) for _ in range(2))
    flat.load_state_dict(padded.state_dict())
    flat.token_embedder.embedding_layer.sparse = True  # as training runs it (SparseAdam)
    lengths = torch.tensor([5, 1, 9, 3])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 300, (4, 9)) * mask  # padding is id 0
    ids[0, :2] = ids[2, :2]  # an id shared by two texts, and repeated within one
    ids[2, 3] = ids[2, 0]
    targets = torch.tensor([0, 3, 6, 2])
    padded_loss = torch.nn.functional.cross_entropy(padded(ids, mask), targets)
    flat_loss = torch.nn.functional.cross_entropy(flat.forward_flat(*flat_batch(ids, mask)), targets)
    assert torch.allclose(padded_loss, flat_loss, atol=1e-6)
    padded_loss.backward()
    flat_loss.backward()
    for (name, a), (_, b) in zip(padded.named_parameters(), flat.named_parameters(), strict=True):
        b_grad = b.grad.to_dense() if b.grad.is_sparse else b.grad
        assert torch.allclose(a.grad, b_grad, atol=1e-6), name


def test_texts_read_at_once_without_gradients_give_the_padded_paths_logits_even_when_empty():
    from nace_app.model.mean_pool import flat_batch

    torch.manual_seed(2)
    model = MeanPoolModel(300, 16, 7, padding_idx=0)
    lengths = torch.tensor([5, 0, 9, 3])  # an empty text: the library's zero sentence, so the head's bias
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 300, (4, 9)) * mask
    with torch.no_grad():
        assert torch.allclose(model.forward_texts(*flat_batch(ids, mask)), model(ids, mask), atol=1e-6)
