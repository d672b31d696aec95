"""Forward passes that give the library's logits without its waste.

`torchTextClassifiers.predict` runs every text padded to `output_dim` in one batch with autograd on. Here texts
are tokenized once, sorted by length and run in chunks under `torch.inference_mode()`, each chunk cut to its
longest real text. Cutting is exact only where it is proved so:

- no self-attention: every later step masks padding, so padding columns change nothing;
- one self-attention layer (the pretrained configuration): real tokens *do* attend to padding, but the keys and
  values of a padding token depend only on its position, so they are computed once for every position and
  appended to each cut chunk; the real tokens then see exactly the keys and values of the full padded input.

Any other architecture runs the library's own forward pass on the fully padded input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


@dataclass
class Encoded:
    """Token ids of each text (truncated as the library does), and the padded width the library would use."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]] | None
    word_ids: list[list[int | None]] | None
    full_width: int
    pad_id: int


def encode(tokenizer, texts: list[str], with_offsets: bool = False) -> Encoded:
    """Tokenize like the library (same truncation); padding is added per chunk later."""
    output_dim = tokenizer.output_dim
    batch = tokenizer.tokenizer(
        texts,
        padding=False,
        truncation=output_dim is not None,
        max_length=output_dim,
        return_offsets_mapping=with_offsets,
    )
    ids = batch["input_ids"]
    longest = max((len(i) for i in ids), default=1)
    offsets = [list(map(tuple, o)) for o in batch["offset_mapping"]] if with_offsets else None
    word_ids = [batch.word_ids(i) for i in range(len(ids))] if with_offsets else None
    return Encoded(ids, offsets, word_ids, output_dim or longest, tokenizer.padding_idx)


def pad(ids: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq[:width], dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


class FastForward:
    """Logits of a `TextClassificationModel` from (possibly cut) inputs; see the module docstring for when."""

    def __init__(self, model: torch.nn.Module):
        from torchTextClassifiers.model import TextClassificationModel

        self.model = model
        embedder = getattr(model, "token_embedder", None)
        attention = getattr(embedder, "attention_config", None) if embedder is not None else None
        standard = (
            type(model) is TextClassificationModel
            and embedder is not None
            and model.categorical_variable_net is None
        )
        self.self_attention = attention is not None
        self.can_cut = standard and (attention is None or len(embedder.transformer.h) == 1)
        self._padding_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- the cut path ------------------------------------------------------------------------------------------

    def _rotary(self, width: int):
        embedder = self.model.token_embedder
        if not embedder.attention_config.positional_encoding:
            return None
        return embedder.cos[:, :width], embedder.sin[:, :width]

    def _qkv(self, x: torch.Tensor, rotary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from torchTextClassifiers.model.components.attention import apply_rotary_emb

        attn = self.model.token_embedder.transformer.h[0].attn
        batch, width, _ = x.shape
        h = _norm(x)
        q = attn.c_q(h).view(batch, width, attn.n_head, attn.head_dim)
        k = attn.c_k(h).view(batch, width, attn.n_kv_head, attn.head_dim)
        v = attn.c_v(h).view(batch, width, attn.n_kv_head, attn.head_dim)
        if rotary is not None:
            q, k = apply_rotary_emb(q, *rotary), apply_rotary_emb(k, *rotary)
        q, k = _norm(q), _norm(k)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def padding_kv(self, full_width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of a padding token at every position: the same for every text."""
        if full_width not in self._padding_kv:
            embedder = self.model.token_embedder
            pad_ids = torch.full((1, full_width), embedder.padding_idx, dtype=torch.long)
            with torch.no_grad():
                x = _norm(embedder.embedding_layer(pad_ids))
                _, k, v = self._qkv(x, self._rotary(full_width))
            self._padding_kv[full_width] = (k, v)
        return self._padding_kv[full_width]

    def from_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor, full_width: int) -> torch.Tensor:
        """Logits from the embedding layer's output for the first `width` columns of a `full_width` input."""
        model = self.model
        x = _norm(embeddings)
        if self.self_attention:
            block = model.token_embedder.transformer.h[0]
            batch, width, _ = x.shape
            q, k, v = self._qkv(x, self._rotary(width))
            pad_k, pad_v = self.padding_kv(full_width)
            k = torch.cat([k, pad_k[:, :, width:].expand(batch, -1, -1, -1)], dim=2)
            v = torch.cat([v, pad_v[:, :, width:].expand(batch, -1, -1, -1)], dim=2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=block.attn.enable_gqa)
            x = x + block.attn.c_proj(y.transpose(1, 2).contiguous().view(batch, width, -1))
            x = x + block.mlp(_norm(x))
            x = _norm(x)
        sentence = model.sentence_embedder(x, mask)["sentence_embedding"]
        return model.classification_head(_norm(sentence)).squeeze(-1)

    # --- entry points --------------------------------------------------------------------------------------------

    def logits(self, ids: list[list[int]], full_width: int, pad_id: int) -> torch.Tensor:
        """Logits for already tokenized texts, equal to the library's forward on inputs padded to `full_width`."""
        if self.can_cut:
            width = max(len(seq) for seq in ids)
            input_ids, mask = pad(ids, width, pad_id)
            return self.from_embeddings(self.model.token_embedder.embedding_layer(input_ids), mask, full_width)
        input_ids, mask = pad(ids, full_width, pad_id)
        empty = torch.empty((len(ids), 0), dtype=torch.float32)
        return self.model(input_ids, mask, empty)
