"""The mean-pooling model in plain torch: explanations and training without importing torchTextClassifiers.

`import torchTextClassifiers` costs seconds and a gigabyte (it pulls in Lightning), while the model every run here
trains by default, and the embedded one, is an embedding bag: `head(rms_norm(mean(rms_norm(embedding[ids]))))`.
`MeanPoolModel` is the library's `TextClassificationModel` with no attention, no label attention and no categorical
variables, module for module: the same parameter names (its state dict loads into the library's model and back),
the same initialisation and the same forward. Tests hold it against the library's model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def model_config(embedding_dim: int, num_classes: int) -> dict[str, Any]:
    """The library's `ModelConfig(embedding_dim, num_classes).to_dict()`, for our format's config.json."""
    return {"embedding_dim": embedding_dim, "num_classes": num_classes, "categorical_vocabulary_sizes": None,
            "categorical_embedding_dims": None, "attention_config": None, "n_heads_label_attention": None,
            "aggregation_method": "mean"}


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class TokenEmbedder(nn.Module):
    """The library's `TokenEmbedder` without attention: a lookup, then RMS normalisation."""

    attention_config = None

    def __init__(self, vocab_size: int, embedding_dim: int, padding_idx: int):
        super().__init__()
        self.vocab_size, self.embedding_dim, self.padding_idx = vocab_size, embedding_dim, padding_idx
        self.embedding_layer = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        nn.init.normal_(self.embedding_layer.weight, mean=0.0, std=1.0)  # the library's init (padding row included)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"token_embeddings": _norm(self.embedding_layer(input_ids.long())), "attention_mask": attention_mask}


class SentenceEmbedder(nn.Module):
    """The mean over real tokens (a text with none has a zero sentence, as the library's clamp gives)."""

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = attention_mask.unsqueeze(-1).float()
        sentence = (token_embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return {"sentence_embedding": torch.nan_to_num(sentence, 0.0)}


class ClassificationHead(nn.Module):
    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.input_dim, self.num_classes = input_dim, num_classes
        self.net = nn.Linear(input_dim, num_classes)
        nn.init.zeros_(self.net.weight)  # the library zeroes the head's weights; the bias keeps torch's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MeanPoolModel(nn.Module):
    """Logits `(batch, classes)` from padded ids and their mask, as the library's model computes them."""

    categorical_variable_net = None
    enable_label_attention = False

    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int, padding_idx: int):
        super().__init__()
        self.token_embedder = TokenEmbedder(vocab_size, embedding_dim, padding_idx)
        self.sentence_embedder = SentenceEmbedder()
        self.classification_head = ClassificationHead(embedding_dim, num_classes)
        self.num_classes = num_classes

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], padding_idx: int) -> MeanPoolModel:
        """A model holding (copies of) saved weights, read as float32."""
        vocab_size, dim = state["token_embedder.embedding_layer.weight"].shape
        model = cls(vocab_size, dim, state["classification_head.net.bias"].shape[0], padding_idx)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, categorical_vars: Any = None,
                **_: Any) -> torch.Tensor:
        tokens = self.token_embedder(input_ids, attention_mask)["token_embeddings"]
        sentence = self.sentence_embedder(tokens, attention_mask)["sentence_embedding"]
        return self.classification_head(_norm(sentence))

    def forward_flat(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The same logits from the texts' real ids end to end (`offsets`: where each text starts; none is empty).

        Training's path: no padding is looked up, normalised or summed, the RMS norm is taken once per distinct id
        of the batch, and the embedding's gradient (sparse when the layer is) has one row per distinct id.
        """
        layer = self.token_embedder.embedding_layer
        distinct, position = torch.unique(ids, return_inverse=True)
        rows = F.embedding(distinct, layer.weight, padding_idx=layer.padding_idx, sparse=layer.sparse)
        sentence = F.embedding_bag(position, _norm(rows), offsets, mode="mean")
        return self.classification_head(_norm(sentence))

    def forward_texts(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """`forward_flat`'s logits for many texts read without gradients (the validation split after each epoch):
        the whole table normalised once costs less than sorting a million ids to find the distinct ones."""
        weight = self.token_embedder.embedding_layer.weight
        sentence = F.embedding_bag(ids, _norm(weight), offsets, mode="mean")
        return self.classification_head(_norm(sentence))


def flat_batch(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real ids of padded rows end to end, and the offset where each row starts: `forward_flat`'s input."""
    lengths = mask.sum(dim=1)
    return ids[mask.bool()], torch.cumsum(lengths, dim=0) - lengths
