"""Our tokenization gives the library's ids for both tokenizers, with spans in the text the user typed."""

import random
import string

import pytest

from nace_app.model.formats import load_model
from nace_app.model.tokenization import NGRAM, clean_words, encode, kind_of, read_until

ODD_TEXTS = ["Café-bar in Lyon, plumbing!", "  I   sell\tcroissants ", "ﬁsh & chips", "e\u0301clair", "",
             "日本語 🍞", "RÉPARATION d'ÉLECTROMÉNAGER"]


def test_cleaned_words_equal_the_library_cleaning_and_point_into_the_original_text():
    from torchTextClassifiers.tokenizers.ngram import clean_text_feature

    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + " -'.,éèÀçñ\u0301İß\u00a0ﬁ😀Ωк"
    texts = ODD_TEXTS + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    texts += ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40))) for _ in range(2000)]  # ASCII path
    for text in texts:
        words = clean_words(text)
        assert " ".join(w for w, _, _ in words) == clean_text_feature([text])[0]
        for _, start, end in words:
            assert text[start:end].strip() == text[start:end] and end > start


def test_ngram_ids_equal_the_library_tokenizer(ngram_model_dir, tiny_frame):
    tokenizer = load_model(ngram_model_dir).ttc.tokenizer
    assert kind_of(tokenizer) == NGRAM
    texts = ODD_TEXTS + tiny_frame["label"].to_list()[:40]
    ours = encode(tokenizer, texts, with_offsets=True)
    library = tokenizer.tokenize(texts)
    for row, ids in enumerate(ours.ids):
        assert ids == library.input_ids[row, : len(ids)].tolist()
        assert int(library.attention_mask[row].sum()) == len(ids)


@pytest.mark.parametrize("fixture", ["bag_model_dir", "attention_model_dir", "ngram_model_dir"])
def test_every_word_span_is_the_word_typed(fixture, request, tiny_frame):
    tokenizer = load_model(request.getfixturevalue(fixture), lambda: tiny_frame["code"].to_list()).ttc.tokenizer
    text = "We repair Mercedes-Benz cars in Köln"
    encoded = encode(tokenizer, [text], with_offsets=True)
    spans: dict[int, tuple[int, int]] = {}
    for (start, end), word in zip(encoded.offsets[0], encoded.word_ids[0], strict=True):
        if word is not None:
            first, last = spans.get(word, (start, end))
            spans[word] = (min(first, start), max(last, end))
    assert {"repair", "cars", "Köln"} <= {text[s:e] for s, e in spans.values()}


def test_read_until_marks_where_a_windowed_model_stops(attention_model_dir, ngram_model_dir, tiny_frame):
    windowed = load_model(attention_model_dir, lambda: tiny_frame["code"].to_list()).tokenizer
    whole = load_model(ngram_model_dir).tokenizer
    long_text = "we bake bread " * 60 + "and sell cars"
    assert read_until(whole, long_text) is None
    assert read_until(windowed, "I sell bread") is None
    stop = read_until(windowed, long_text)
    assert stop is not None and 0 < stop < len(long_text) - len("and sell cars")


VARIED = ODD_TEXTS + ["Café-bar à Lyon, plombier 24/7 !!", "3D printing & CNC 2024", "🍞🥐", "   ", "a", "ab", "x" * 40,
                      "Größe ÆØÅ œuvre İstanbul", "naïve coöperation", "12345 67890", "!!!", "\u00a0tab\tnew\nline"]


def test_own_ngram_ids_equal_the_library_ids_on_varied_texts(tiny_frame):
    """Our hashing (no library, no torch) against the library's `tokenize`, on the embedded model's vocabulary."""
    import json

    from nace_app.model.tokenization import NGramIds, ngram_tokenizer_from_config
    from nace_app.sources.resolve import embedded_model_dir

    config = json.loads((embedded_model_dir() / "tokenizer.json").read_text())
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + " -'.,éèÀçñ\u0301İß\u00a0ﬁ😀Ωк"
    texts = VARIED + tiny_frame["label"].to_list()[:200] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    for output_dim in (None, 7):
        ours = encode(NGramIds.from_config(config, output_dim), texts)
        library = ngram_tokenizer_from_config(config, output_dim).tokenize(texts)
        for row, ids in enumerate(ours.ids):
            assert ids == library.input_ids[row, : len(ids)].tolist()
            assert int(library.attention_mask[row].sum()) == len(ids)


@pytest.mark.parametrize("fixture", ["bag_model_dir", "attention_model_dir"])  # whole texts, a 125-token window
def test_own_wordpiece_ids_equal_the_library_tokenizer(fixture, request, tiny_frame):
    from nace_app.model.tokenization import WordPieceIds, own_tokenizer

    library = load_model(request.getfixturevalue(fixture), lambda: tiny_frame["code"].to_list()).ttc.tokenizer
    ours = own_tokenizer(library)
    assert isinstance(ours, WordPieceIds) and ours.padding_idx == library.padding_idx
    texts = VARIED + ["we bake bread " * 80] + tiny_frame["label"].to_list()[:60]
    encoded = encode(ours, texts)
    reference = library.tokenize(texts)
    for row, ids in enumerate(encoded.ids):
        assert ids == reference.input_ids[row, : len(ids)].tolist()
        assert int(reference.attention_mask[row].sum()) == len(ids)
