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

import numpy as np
import torch
import torch.nn.functional as F


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def pad(ids: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (or cut) ids and their attention mask, built without a Python loop over tokens."""
    lengths = np.fromiter((min(len(seq), width) for seq in ids), dtype=np.int64, count=len(ids))
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter((token for seq in ids for token in seq[:width]), dtype=np.int64,
                                  count=int(lengths.sum()))
    return torch.from_numpy(input_ids), torch.from_numpy(mask.astype(np.int64))


class FastForward:
    """Logits of a `TextClassificationModel` from (possibly cut) inputs; see the module docstring for when."""

    def __init__(self, model: torch.nn.Module):
        from nace_app.model.mean_pool import MeanPoolModel

        self.model = model
        embedder = getattr(model, "token_embedder", None)
        attention = getattr(embedder, "attention_config", None) if embedder is not None else None
        if type(model) is MeanPoolModel:  # ours: no need to import the library to know it
            standard = True
        else:
            from torchTextClassifiers.model import TextClassificationModel

            standard = (type(model) is TextClassificationModel and embedder is not None
                        and model.categorical_variable_net is None)
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
            with torch.inference_mode(False), torch.no_grad():  # normal tensors: explanations reuse them
                x = _norm(embedder.embedding_layer(pad_ids))
                _, k, v = self._qkv(x, self._rotary(full_width))
            self._padding_kv[full_width] = (k, v)
        return self._padding_kv[full_width]

    @staticmethod
    def _attend(q, k, v, pad_k, pad_v, width: int, attn) -> torch.Tensor:
        """Softmax attention over the real keys plus the shared padding keys, without copying the latter per text.

        Equal to scaled_dot_product_attention over the concatenated keys: both parts share one max and one sum.
        """
        if attn.enable_gqa:  # grouped heads: repeat the key/value heads to match the query heads
            repeat = attn.n_head // attn.n_kv_head
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            pad_k, pad_v = pad_k.repeat_interleave(repeat, dim=1), pad_v.repeat_interleave(repeat, dim=1)
        heads, batch, width_, depth = q.shape[1], q.shape[0], q.shape[2], q.shape[3]
        scale = depth ** -0.5
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # heads first: (heads, batch, width, depth)
        real = torch.matmul(q, k.transpose(-2, -1)) * scale
        if width >= pad_k.shape[2]:  # texts that fill the whole window: no padding to attend to
            return torch.matmul(torch.softmax(real, dim=-1), v).transpose(0, 1)
        flat_q = q.reshape(heads, batch * width_, depth)  # one batched product per head against the shared keys
        padding = torch.bmm(flat_q, pad_k[0, :, width:].transpose(-2, -1)).view(heads, batch, width_, -1) * scale
        top = torch.maximum(real.amax(-1, keepdim=True), padding.amax(-1, keepdim=True))
        real, padding = (real - top).exp_(), (padding - top).exp_()
        total = real.sum(-1, keepdim=True) + padding.sum(-1, keepdim=True)
        from_padding = torch.bmm(padding.view(heads, batch * width_, -1), pad_v[0, :, width:]).view(heads, batch, width_, depth)
        return ((torch.matmul(real, v) + from_padding) / total).transpose(0, 1)

    def from_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor, full_width: int) -> torch.Tensor:
        """Logits from the embedding layer's output for the first `width` columns of a `full_width` input."""
        sentence = self.sentence_from_embeddings(embeddings, mask, full_width)
        return self.model.classification_head(_norm(sentence)).squeeze(-1)

    def sentence_from_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor, full_width: int) -> torch.Tensor:
        """The pooled sentence embedding the head reads (before its normalisation), on the cut path."""
        model = self.model
        x = _norm(embeddings)
        if self.self_attention:
            block = model.token_embedder.transformer.h[0]
            batch, width, _ = x.shape
            q, k, v = self._qkv(x, self._rotary(width))
            y = self._attend(q, k, v, *self.padding_kv(full_width), width, block.attn)
            x = x + block.attn.c_proj(y.transpose(1, 2).contiguous().view(batch, width, -1))
            x = x + block.mlp(_norm(x))
            x = _norm(x)
        return model.sentence_embedder(x, mask)["sentence_embedding"]

    def sentences(self, ids: list[list[int]], full_width: int, pad_id: int) -> torch.Tensor:
        """Sentence embeddings of tokenized texts, equal to the library's on inputs padded to `full_width`."""
        if self.can_cut:
            input_ids, mask = pad(ids, max(len(seq) for seq in ids), pad_id)
            return self.sentence_from_embeddings(self.model.token_embedder.embedding_layer(input_ids), mask, full_width)
        input_ids, mask = pad(ids, full_width, pad_id)
        tokens = self.model.token_embedder(input_ids, mask)["token_embeddings"]
        return self.model.sentence_embedder(tokens, mask)["sentence_embedding"]

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
