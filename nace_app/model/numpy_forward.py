"""The forward pass of a mean-pooling model in numpy: prediction without torch or torchTextClassifiers.

For the library's `TextClassificationModel` with no self-attention, no label attention, no categorical variables
and mean pooling (the embedded model, and every model trained here without attention), the logits are

    head(rms_norm(mean over real tokens of rms_norm(embedding[id])))

which needs an embedding table, a linear layer and numpy. The RMS norm of a token depends on its own row only,
so the table is normalised once at load; a text is then a sum of table rows, with no padding at all.
Weights stored as float16 are widened to float32 first, as torch's `load_state_dict` does, and all arithmetic is
float32 like the torch path (tests hold the probabilities within 1e-5 of it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

EMBEDDING = "token_embedder.embedding_layer.weight"
HEAD_WEIGHT = "classification_head.net.weight"
HEAD_BIAS = "classification_head.net.bias"
_FLOAT32_EPS = np.finfo(np.float32).eps  # torch's rms_norm default eps for float32


def rms(x: np.ndarray) -> np.ndarray:
    """The divisor of `rms_norm`, sqrt(mean(x²) + eps) over the last axis (kept), in x's precision."""
    return np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + _FLOAT32_EPS)


def rms_norm(x: np.ndarray) -> np.ndarray:
    """`F.rms_norm(x, (x.shape[-1],))` in float32: x / sqrt(mean(x²) + eps)."""
    return x / rms(x)


def is_mean_pooling(model_config: dict[str, Any], state: dict[str, np.ndarray]) -> bool:
    """True when the configuration and the weights are exactly those of the plain embedding bag."""
    plain = (model_config.get("attention_config") is None and model_config.get("n_heads_label_attention") is None
             and not model_config.get("categorical_vocabulary_sizes")
             and model_config.get("aggregation_method", "mean") == "mean")
    return plain and set(state) == {EMBEDDING, HEAD_WEIGHT, HEAD_BIAS}


@dataclass(frozen=True)
class MeanPoolForward:
    """Logits and sentence embeddings of tokenized texts; nothing here is mutated after construction."""

    normalised_embeddings: np.ndarray  # (vocabulary, dim) float32: rms_norm of each row of the embedding table
    head_weight_t: np.ndarray  # (dim, classes) float32
    head_bias: np.ndarray  # (classes,) float32

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> MeanPoolForward:
        embeddings = state[EMBEDDING].astype(np.float32)
        weight, bias = state[HEAD_WEIGHT].astype(np.float32), state[HEAD_BIAS].astype(np.float32)
        if weight.ndim != 2 or embeddings.ndim != 2 or weight.shape[1] != embeddings.shape[1] or bias.shape != weight.shape[:1]:
            raise ValueError(f"weights of inconsistent shapes: embeddings {embeddings.shape}, head {weight.shape}, "
                             f"bias {bias.shape}")
        # the head in float64: a row's logits then do not depend on the batch it came in (BLAS blocks float32 sums
        # by batch size), so the CLI, the page and Spark's Arrow batches give the same probabilities
        return cls(rms_norm(embeddings), np.ascontiguousarray(weight.T, dtype=np.float64), bias.astype(np.float64))

    @property
    def num_classes(self) -> int:
        return self.head_bias.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.normalised_embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.normalised_embeddings.shape[1]

    def sentences(self, ids: list[list[int]], full_width: int, pad_id: int = 0) -> np.ndarray:
        """The pooled sentence embeddings the head reads (texts, dim), before its normalisation.

        Only the first `full_width` ids of a text count, as in the library's padded input; an empty text has a
        zero sentence, as the library's `nan_to_num` of 0/1 gives.
        """
        return self.sentences_of(TokenCounts.of(ids, full_width, self.vocab_size))

    def sentences_of(self, counts: TokenCounts) -> np.ndarray:
        """The sum is a sparse (texts × vocabulary) count matrix times the table: no (tokens × dim) copy of gathered
        rows, which cost six times the CPU and as many bytes as the tokens times the width. Each row is summed on
        its own, so a text's embedding does not depend on the batch it came in."""
        sums = np.asarray(counts.matrix @ self.normalised_embeddings, dtype=np.float32)
        return sums / np.maximum(counts.lengths, 1).astype(np.float32)[:, None]

    def logits(self, ids: list[list[int]], full_width: int, pad_id: int = 0) -> np.ndarray:
        """float32 logits (texts, classes), equal to the library's forward on inputs padded to `full_width`."""
        return self.logits_of(TokenCounts.of(ids, full_width, self.vocab_size))

    def logits_of(self, counts: TokenCounts) -> np.ndarray:
        """The logits of texts counted once (a training run's validation rows, read after every epoch)."""
        sentences = rms_norm(self.sentences_of(counts)).astype(np.float64)
        return (sentences @ self.head_weight_t + self.head_bias).astype(np.float32)


@dataclass(frozen=True)
class TokenCounts:
    """Tokenized texts as a sparse (texts × vocabulary) count matrix (scipy's CSR) and their lengths: what a
    mean-pooling model reads of them, whatever its weights."""

    matrix: Any  # scipy.sparse.csr_array, float32
    lengths: np.ndarray  # (texts,) int64

    @classmethod
    def of(cls, ids: list[list[int]], full_width: int, vocab_size: int) -> TokenCounts:
        """Only the first `full_width` ids of a text count, as in the library's padded input."""
        from scipy.sparse import csr_array  # 0.3 s of import, paid by the first prediction, not by start-up

        kept = [seq[:full_width] for seq in ids]
        lengths = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
        offsets = np.zeros(len(kept) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(kept), dtype=np.int64, count=int(offsets[-1]))
        matrix = csr_array((np.ones(flat.size, dtype=np.float32), flat, offsets), shape=(len(kept), vocab_size))
        return cls(matrix, lengths)
