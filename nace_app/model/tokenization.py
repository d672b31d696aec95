"""How texts become token ids: the library's WordPiece (a Hugging Face tokenizer) or its fastText-style n-grams.

Both give, besides the ids, each token's span in the *original* text and the index of the word it belongs to,
so that explanations can highlight the words the user typed. For n-grams the library cleans the text first
(lowercase, accents stripped, anything but a-z0-9 becomes a space) and reports offsets in the cleaned text;
here the same cleaning is done character by character, keeping where each cleaned word came from.

Texts are tokenized here by our own `NGramIds` and `WordPieceIds`, which import neither torch nor the library
(`import torchTextClassifiers` costs seconds and a gigabyte): the n-gram ids are the library's `SubwordCache`
hashing redone (FNV-1a of each character n-gram of `<word>`, in buckets after the word vocabulary), WordPiece
is the saved Hugging Face tokenizer run by the `tokenizers` package with the truncation the library asks for.
Tests check both against the library's `tokenize`. `own_tokenizer` turns the library's tokenizers into ours.

Two quirks of `NGramTokenizer` 2.0 are handled: it builds its word vocabulary from raw text while it tokenizes
cleaned text, so `train_ngram_ids` learns the vocabulary from cleaned text; and it ignores `len_word_ngrams`, so our
models record 1 (no word n-grams; a quick experiment found word bigrams did not help).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

WORDPIECE = "wordpiece"
NGRAM = "ngram"
TOKENIZER_KINDS = (WORDPIECE, NGRAM)

_COMBINING_MARKS = {c: None for c in range(0x0300, 0x0370)}  # the library's table
_WORD_CHAR = re.compile(r"[a-z0-9]")
_ASCII_WORDS = re.compile(r"[a-z0-9]+")


@dataclass
class Encoded:
    """Token ids of each text (truncated as the library does), and the padded width the library would use."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]] | None
    word_ids: list[list[int | None]] | None
    full_width: int
    pad_id: int


_SUBWORD_CACHE_LIMIT = 200_000  # words; a stream of new words (a 200,000-row file) must not grow memory forever


@dataclass
class NGramIds:
    """The library's `NGramTokenizer` ids (fastText-style: the word's id, then its hashed character n-grams)."""

    word_to_id: dict[str, int]
    min_n: int
    max_n: int
    num_tokens: int
    output_dim: int | None = None
    min_count: int = 1
    word_ngrams: int = 1
    preprocess: bool = True
    pad_token_id: int = 0
    unk_token_id: int = 1
    eos_token_id: int = 2
    _subwords: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)  # a cache

    @property
    def nwords(self) -> int:
        return len(self.word_to_id)

    @property
    def vocab_size(self) -> int:
        return 3 + self.nwords + self.num_tokens

    @property
    def padding_idx(self) -> int:
        return self.pad_token_id

    @classmethod
    def from_config(cls, config: dict[str, Any], output_dim: int | None = None) -> NGramIds:
        """From the library's `save_pretrained` fields (our `tokenizer.json`)."""
        return cls({str(w): int(i) for w, i in config["word_to_id"].items()}, int(config["min_n"]), int(config["max_n"]),
                   int(config["num_tokens"]), output_dim, int(config["min_count"]),
                   int(config.get("len_word_ngrams", 1)), bool(config.get("preprocess", True)))

    def reuse_words_of(self, other: NGramIds) -> None:
        """Take the words `other` has hashed so far, when its ids are ours (the same vocabulary and buckets)."""
        if other == self:
            self._subwords.update(other._subwords)

    def get(self, word: str) -> list[int]:
        """The ids of one cleaned word, as `SubwordCache.get` (a word id only when the word is in the vocabulary)."""
        ids = self._subwords.get(word)
        if ids is None:
            if len(self._subwords) >= _SUBWORD_CACHE_LIMIT:
                self._subwords.clear()
            ids = self._subwords[word] = self._compute(word)
        return ids

    def _compute(self, word: str) -> list[int]:
        word_id = self.word_to_id.get(word)
        ids = [] if word_id is None else [word_id]
        tagged = f"<{word}>"
        first_bucket = 3 + self.nwords
        for n in range(self.min_n, self.max_n + 1):
            for start in range(len(tagged) - n + 1):
                ngram = tagged[start : start + n]
                if ngram != word and ngram != tagged:  # the library's rule, quirks included
                    ids.append(first_bucket + fnv1a(ngram) % self.num_tokens)
        return ids or [self.unk_token_id]


def fnv1a(text: str) -> int:
    """32-bit FNV-1a over code points: the library's `fast_hash`."""
    value = 2166136261
    for char in text:
        value = ((value ^ ord(char)) * 16777619) & 0xFFFFFFFF
    return value


@dataclass
class WordPieceIds:
    """A saved Hugging Face WordPiece tokenizer run by `tokenizers` alone (transformers costs 3 CPU-s to import).

    Two copies of the backend, because truncation is state of the Rust object and sessions share this one.
    """

    json_text: str
    output_dim: int | None = None

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer

        self.whole = Tokenizer.from_str(self.json_text)
        self.whole.no_padding()
        self.whole.no_truncation()
        self.truncated = Tokenizer.from_str(self.json_text)
        self.truncated.no_padding()
        if self.output_dim is not None:
            self.truncated.enable_truncation(self.output_dim)
        else:
            self.truncated.no_truncation()
        self.padding_idx = self.whole.token_to_id("[PAD]")
        self.vocab_size = self.whole.get_vocab_size(with_added_tokens=True)


def own_tokenizer(tokenizer: Any) -> NGramIds | WordPieceIds:
    """Ours, from a library tokenizer (`NGramTokenizer` or `WordPieceTokenizer`); ours are returned as they are."""
    if isinstance(tokenizer, NGramIds | WordPieceIds):
        return tokenizer
    if hasattr(tokenizer, "word_to_id"):
        return NGramIds(tokenizer.word_to_id, tokenizer.min_n, tokenizer.max_n, tokenizer.num_tokens,
                        tokenizer.output_dim, tokenizer.min_count, tokenizer.word_ngrams, tokenizer.preprocess,
                        tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id)
    return WordPieceIds(tokenizer.tokenizer.backend_tokenizer.to_str(), tokenizer.output_dim)


def kind_of(tokenizer: Any) -> str:
    """NGRAM or WORDPIECE, for ours and the library's tokenizers alike."""
    return NGRAM if isinstance(tokenizer, NGramIds) or hasattr(tokenizer, "word_to_id") else WORDPIECE


# --- n-grams ----------------------------------------------------------------------------------------------------


def clean_words(text: str) -> list[tuple[str, int, int]]:
    """The words of the library's cleaned text, each with its span in `text`.

    `" ".join(w for w, _, _ in clean_words(t)) == clean_text_feature([t])[0]`; a character that cleans to nothing
    (a combining accent) neither ends nor starts a word, as in the library. ASCII text (most of it) takes a regex:
    there lowercasing and the accent folding change no length, so the words are the runs of [a-z0-9].
    """
    if text.isascii():
        return [(m.group(), m.start(), m.end()) for m in _ASCII_WORDS.finditer(text.lower())]
    words: list[tuple[str, int, int]] = []
    letters: list[str] = []
    start = end = 0
    for position, char in enumerate(text):
        cleaned = unicodedata.normalize("NFKD", char.lower()).translate(_COMBINING_MARKS)
        for piece in cleaned:
            if _WORD_CHAR.match(piece):
                if not letters:
                    start = position
                letters.append(piece)
                end = position + 1
            elif letters:
                words.append(("".join(letters), start, end))
                letters = []
        if not cleaned and letters:
            end = position + 1
    if letters:
        words.append(("".join(letters), start, end))
    return words


def _lazy_subword_cache(tokenizer: Any) -> Any:
    """The library's `SubwordCache` without its eager pass over the whole vocabulary (seconds at load time)."""
    from torchTextClassifiers.tokenizers.ngram import SubwordCache

    cache = SubwordCache.__new__(SubwordCache)
    cache.cache = {}
    cache.word_to_id = tokenizer.word_to_id
    cache.min_n, cache.max_n = tokenizer.min_n, tokenizer.max_n
    cache.num_tokens, cache.nwords = tokenizer.num_tokens, tokenizer.nwords
    cache.unk_token_id = tokenizer.unk_token_id
    return cache


def ngram_tokenizer_from_config(config: dict[str, Any], output_dim: int | None = None) -> Any:
    """An `NGramTokenizer` from its JSON configuration (the library's `save_pretrained` fields): no unpickling."""
    from torchTextClassifiers.tokenizers import NGramTokenizer

    tokenizer = NGramTokenizer(min_count=int(config["min_count"]), min_n=int(config["min_n"]),
                               max_n=int(config["max_n"]), num_tokens=int(config["num_tokens"]),
                               len_word_ngrams=int(config.get("len_word_ngrams", 1)),
                               preprocess=bool(config.get("preprocess", True)), output_dim=output_dim)
    tokenizer.word_to_id = {str(w): int(i) for w, i in config["word_to_id"].items()}
    tokenizer.nwords = len(tokenizer.word_to_id)
    tokenizer.vocab_size = 3 + tokenizer.nwords + tokenizer.num_tokens
    tokenizer.id_to_word = {i: w for w, i in tokenizer.word_to_id.items()}
    tokenizer.id_to_word.update({tokenizer.pad_token_id: tokenizer.PAD_TOKEN, tokenizer.unk_token_id: tokenizer.UNK_TOKEN,
                                 tokenizer.eos_token_id: tokenizer.EOS_TOKEN})
    tokenizer.subword_cache = _lazy_subword_cache(tokenizer)
    return tokenizer


def ngram_tokenizer_config(tokenizer: Any) -> dict[str, Any]:
    """The library's `save_pretrained` fields, of ours or the library's tokenizer."""
    return {"min_count": tokenizer.min_count, "min_n": tokenizer.min_n, "max_n": tokenizer.max_n,
            "num_tokens": tokenizer.num_tokens, "len_word_ngrams": tokenizer.word_ngrams,
            "preprocess": tokenizer.preprocess, "nwords": tokenizer.nwords, "vocab_size": tokenizer.vocab_size,
            "word_to_id": tokenizer.word_to_id}


def train_ngram_ids(texts: list[str], min_n: int, max_n: int, buckets: int, min_count: int) -> NGramIds:
    """The vocabulary of the library's `NGramTokenizer.train` on cleaned text: the cleaned words seen `min_count`
    times, numbered from 3 in order of first appearance. (The library trained on raw text would count words such as
    "Bakery," that its tokenizer, reading cleaned text, never sees.)"""
    counts: dict[str, int] = {}
    for text in texts:
        for word, _, _ in clean_words(text):
            counts[word] = counts.get(word, 0) + 1
    kept = (word for word, count in counts.items() if count >= min_count)
    return NGramIds({word: 3 + i for i, word in enumerate(kept)}, min_n, max_n, buckets, min_count=min_count)


def _encode_ngram(tokenizer: NGramIds, texts: list[str], with_offsets: bool) -> Encoded:
    cache, limit = tokenizer, tokenizer.output_dim
    all_ids, all_offsets, all_word_ids = [], [], []
    for text in texts:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        word_ids: list[int | None] = []
        for index, (word, start, end) in enumerate(clean_words(text)):
            pieces = cache.get(word)
            ids.extend(pieces)
            if with_offsets:
                offsets.extend([(start, end)] * len(pieces))
                word_ids.extend([index] * len(pieces))
        ids.append(tokenizer.eos_token_id)
        offsets.append((len(text), len(text)))
        word_ids.append(None)
        if limit is not None:
            ids, offsets, word_ids = ids[:limit], offsets[:limit], word_ids[:limit]
        all_ids.append(ids)
        all_offsets.append(offsets)
        all_word_ids.append(word_ids)
    longest = max((len(i) for i in all_ids), default=1)
    return Encoded(all_ids, all_offsets if with_offsets else None, all_word_ids if with_offsets else None,
                   limit or longest, tokenizer.pad_token_id)


# --- WordPiece --------------------------------------------------------------------------------------------------


def _encode_wordpiece(tokenizer: WordPieceIds, texts: list[str], with_offsets: bool) -> Encoded:
    encodings = tokenizer.truncated.encode_batch(texts)
    ids = [e.ids for e in encodings]
    longest = max((len(i) for i in ids), default=1)
    offsets = [list(e.offsets) for e in encodings] if with_offsets else None
    word_ids = [e.word_ids for e in encodings] if with_offsets else None
    return Encoded(ids, offsets, word_ids, tokenizer.output_dim or longest, tokenizer.padding_idx)


def encode(tokenizer: Any, texts: list[str], with_offsets: bool = False) -> Encoded:
    """Tokenize like the library (same ids, same truncation); padding is added per chunk later.

    `tokenizer` is ours or the library's (turned into ours, for callers that tokenize once, like training).
    """
    tokenizer = own_tokenizer(tokenizer)
    if isinstance(tokenizer, NGramIds):
        return _encode_ngram(tokenizer, texts, with_offsets)
    return _encode_wordpiece(tokenizer, texts, with_offsets)


def unknown_word_share(tokenizer: NGramIds | WordPieceIds, text: str) -> float:
    """Share of the text's words the model has no entry for (1.0 when nothing in it can be read at all).

    For n-grams a word outside the vocabulary still has its character n-grams, but a text with no a-z0-9 at all
    (emoji, another script) cleans to nothing.
    """
    if isinstance(tokenizer, NGramIds):
        words = [w for w, _, _ in clean_words(text)]
        return sum(w not in tokenizer.word_to_id for w in words) / len(words) if words else 1.0
    backend = tokenizer.whole
    unknown = backend.token_to_id(getattr(backend.model, "unk_token", "[UNK]"))
    specials = {backend.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")} - {None}
    real = [i for i in _encode_wordpiece(tokenizer, [text], False).ids[0] if i not in specials]
    return sum(i == unknown for i in real) / len(real) if real else 1.0


def read_until(tokenizer: NGramIds | WordPieceIds, text: str) -> int | None:
    """Where the model stops reading `text` (a character index), or None when it reads all of it."""
    if tokenizer.output_dim is None:
        return None
    if isinstance(tokenizer, NGramIds):
        total = sum(len(tokenizer.get(w)) for w, _, _ in clean_words(text)) + 1
    else:
        total = len(tokenizer.whole.encode(text).ids)
    if total <= tokenizer.output_dim:
        return None
    encoded = encode(tokenizer, [text], with_offsets=True)
    ends = [end for (_, end), word in zip(encoded.offsets[0], encoded.word_ids[0], strict=True) if word is not None]
    return max(ends, default=0)
