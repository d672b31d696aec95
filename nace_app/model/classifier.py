"""The facade over a loaded model: full-precision probabilities in chunks, top-k predictions with headings.

A mean-pooling model in our format predicts with numpy alone (`numpy_forward`); torch and the library are
imported only when something needs the torch model (explanations, attention models, the library's pickles).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nace_app.model.formats import LoadedModel
from nace_app.model.ranking import confidence_index, top_k_indices
from nace_app.model.tokenization import Encoded, encode, kind_of, unknown_word_share
from nace_app.nomenclature.structure import load_nomenclature
from nace_app.settings.errors import NaceAppError

if TYPE_CHECKING:
    import torch

    from nace_app.model.forward import FastForward
    from nace_app.model.numpy_forward import TokenCounts

DEFAULT_CHUNK = 512


def tempered_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 softmax(logits / T) per row: what every probability a user sees is (T from calibration.json)."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


@dataclass(slots=True)
class Candidate:
    code: str
    heading: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    text: str
    candidates: list[Candidate]

    @property
    def confidence_index(self) -> float:
        return float(confidence_index(np.array([[c.probability for c in self.candidates]]))[0])


@dataclass
class TopK:
    """The k best codes of many texts, as arrays: cheap to turn into JSON rows, a table, or `Prediction`s."""

    texts: list[str]
    codes: np.ndarray  # (texts, k) of str
    headings: np.ndarray  # (texts, k) of str
    probabilities: np.ndarray  # (texts, k), best first

    def predictions(self) -> list[Prediction]:
        return [Prediction(text, [Candidate(c, h, p) for c, h, p in zip(codes, headings, probs, strict=True)])
                for text, codes, headings, probs in zip(self.texts, self.codes.tolist(), self.headings.tolist(),
                                                        self.probabilities.tolist(), strict=True)]

    def rows(self) -> list[dict[str, Any]]:
        """`{"text", "predictions": [{"code", "heading", "probability"}, ...]}` per text, in input order."""
        return [{"text": text, "predictions": [{"code": c, "heading": h, "probability": p}
                                               for c, h, p in zip(codes, headings, probs, strict=True)]}
                for text, codes, headings, probs in zip(self.texts, self.codes.tolist(), self.headings.tolist(),
                                                        self.probabilities.tolist(), strict=True)]

    def frame(self):
        """One row per text: code_i, heading_i, probability_i for each rank, and the confidence index."""
        import polars as pl

        columns: dict[str, Any] = {"text": self.texts}
        for rank in range(self.codes.shape[1]):
            columns[f"code_{rank + 1}"] = self.codes[:, rank].tolist()
            columns[f"heading_{rank + 1}"] = self.headings[:, rank].tolist()
            columns[f"probability_{rank + 1}"] = self.probabilities[:, rank]
        columns["confidence_index"] = confidence_index(self.probabilities)
        return pl.DataFrame(columns)


def _rebuilt(loaded: LoadedModel, name: str, calibration: dict[str, Any] | None, fingerprint: str) -> Classifier:
    classifier = Classifier(loaded, name)
    if calibration is not None and classifier.calibration is None:
        classifier.calibrate_with(calibration)
    if classifier.fingerprint != fingerprint:
        raise RuntimeError(f"{name} changed on its way to another process")
    return classifier


@dataclass
class Classifier:
    """A model ready to predict. Shared by every session: nothing here mutates the model after construction, and
    nothing needs a lock (parameters take no gradients; an explanation's replaced embeddings are per thread)."""

    loaded: LoadedModel
    name: str = "model"

    def __post_init__(self) -> None:
        self.calibration: dict[str, Any] | None = self.loaded.calibration
        self.temperature = float(self.calibration["temperature"]) if self.calibration else 1.0
        self.numpy_forward = self.loaded.numpy_forward
        if self.numpy_forward is None and getattr(self.loaded.ttc, "categorical_var_net", None) is not None:
            raise NaceAppError("models with categorical variables are not supported: NACE coding uses text only")
        self.tokenizer = self.loaded.tokenizer
        self.labels = list(self.loaded.labels)
        self.label_index = {code: i for i, code in enumerate(self.labels)}
        self._torch_parts: tuple[torch.nn.Module, FastForward] | None = None
        self._building = threading.Lock()
        self._replacement = threading.local()  # the embeddings that replace the layer's output, in this thread only
        self.nomenclature = load_nomenclature()
        self._labels_array = np.array(self.labels, dtype=object)
        self._headings_array = np.array([self.nomenclature.heading(code) for code in self.labels], dtype=object)
        self.weights_fingerprint = self._fingerprint()
        self.fingerprint = self._tempered_fingerprint()
        if self.numpy_forward is None:
            _ = self.model  # the torch model is what predicts: build it now, not during the first prediction

    def _torch(self) -> tuple[torch.nn.Module, FastForward]:
        """The torch model and its cut forward pass, built on first use (imports torch; the library only for
        architectures other than mean pooling)."""
        if self._torch_parts is None:
            with self._building:
                if self._torch_parts is None:
                    from nace_app.model.forward import FastForward

                    model = self.loaded.torch_model.cpu().eval()
                    model.requires_grad_(False)
                    forward = FastForward(model)
                    if not forward.can_cut:
                        model.token_embedder.embedding_layer.register_forward_hook(self._replace_embeddings)
                    self._torch_parts = (model, forward)
        return self._torch_parts

    @property
    def model(self) -> torch.nn.Module:
        return self._torch()[0]

    @property
    def forward(self) -> FastForward:
        return self._torch()[1]

    def _fingerprint(self) -> str:
        """Of the labels and the float32 weights: the same whether the model was read by numpy or by torch."""
        digest = hashlib.sha256("\n".join(self.labels).encode())
        if self.loaded.own is not None:
            weights = self.loaded.own.state.items()
        else:
            weights = ((k, t.detach().cpu().numpy()) for k, t in self.model.state_dict().items())
        for key, array in sorted(weights, key=lambda item: item[0]):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(array, dtype=np.float32 if array.dtype.kind == "f" else None).tobytes())
        return digest.hexdigest()[:16]

    def _tempered_fingerprint(self) -> str:
        """The weights' fingerprint, and the temperature when it changes the probabilities (caches key on it)."""
        if self.temperature == 1.0:
            return self.weights_fingerprint
        return hashlib.sha256(f"{self.weights_fingerprint} T={self.temperature!r}".encode()).hexdigest()[:16]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """A copy for another process (the warm-up's child): the same model and calibration, so the same fingerprint
        and the same disk-cache files. Only mean-pooling models travel: others hold torch modules."""
        if self.numpy_forward is None:
            raise TypeError(f"{self.name}: only a mean-pooling model is sent to another process")
        return (_rebuilt, (self.loaded, self.name, self.calibration, self.fingerprint))

    def calibrate_with(self, calibration: dict[str, Any]) -> None:
        """A calibration fitted at runtime (the folder had no calibration.json): called once, by whoever opened the
        model, before anyone else sees it."""
        if self.calibration is not None:
            raise RuntimeError(f"{self.name} is already calibrated")
        self.calibration = calibration
        self.temperature = float(calibration["temperature"])
        self.fingerprint = self._tempered_fingerprint()

    @property
    def sentence_dim(self) -> int:
        """The width of the sentence embedding the head reads."""
        if self.numpy_forward is not None:
            return self.numpy_forward.dim
        return self.model.classification_head.input_dim

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def has_label_attention(self) -> bool:
        if self.numpy_forward is not None:
            return False
        return bool(getattr(self.loaded.ttc, "enable_label_attention", False))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.loaded.model_format,
            "labels_from": self.loaded.labels_from,
            "num_classes": self.num_classes,
            "model_config": self.loaded.model_config,
            "tokenizer": kind_of(self.tokenizer),
            "vocab_size": self.tokenizer.vocab_size,
            "output_dim": self.tokenizer.output_dim,
            "fingerprint": self.fingerprint,
            "temperature": self.temperature,
            "calibrated_on": (self.calibration or {}).get("fitted_on"),
            "training": self.loaded.training,
        }

    def encode(self, texts: list[str], with_offsets: bool = False) -> Encoded:
        return encode(self.tokenizer, texts, with_offsets=with_offsets)

    def logits(self, texts: list[str], chunk_size: int = DEFAULT_CHUNK,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """float32 logits (N, classes), computed in chunks of similar length (with numpy when the model allows)."""
        if self.numpy_forward is not None:
            return self.by_length_chunks(texts, self.num_classes, self.numpy_forward.logits, chunk_size, progress)
        return self.by_length_chunks(texts, self.num_classes, self.forward.logits, chunk_size, progress)

    def by_length_chunks(self, texts: list[str], width: int,
                         compute: Callable[[list[list[int]], int, int], torch.Tensor | np.ndarray],
                         chunk_size: int = DEFAULT_CHUNK,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """`compute(ids, full_width, pad_id)` over texts sorted by length, in chunks; rows back in input order.

        `compute` returns numpy arrays or torch tensors; for the latter it runs under `torch.inference_mode()`.
        """
        encoded = self.encode(texts)
        order = np.argsort([len(seq) for seq in encoded.ids], kind="stable")
        out = np.empty((len(texts), width), dtype=np.float32)
        with self._inference_mode():
            for start in range(0, len(texts), chunk_size):
                rows = order[start : start + chunk_size]
                result = compute([encoded.ids[i] for i in rows], encoded.full_width, encoded.pad_id)
                out[rows] = result if isinstance(result, np.ndarray) else result.numpy()
                if progress is not None:
                    progress(min(start + chunk_size, len(texts)), len(texts))
        return out

    def _inference_mode(self):
        """torch's inference mode when the torch model computes; nothing (and no torch import) otherwise."""
        if self._torch_parts is None:
            return contextlib.nullcontext()
        import torch

        return torch.inference_mode()

    def predict_proba(self, texts: list[str], chunk_size: int = DEFAULT_CHUNK,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Full-precision probabilities (float64 softmax of the logits over the temperature), rows in input order."""
        if not texts:
            return np.zeros((0, self.num_classes))
        return tempered_softmax(self.logits(texts, chunk_size, progress), self.temperature)

    def counted_proba(self, counts: TokenCounts) -> np.ndarray:
        """`predict_proba` of texts already counted, for a mean-pooling model (`numpy_forward` not None)."""
        return tempered_softmax(self.numpy_forward.logits_of(counts), self.temperature)

    def check_top_k(self, top_k: int) -> None:
        if not 1 <= top_k <= self.num_classes:
            raise NaceAppError(f"top-k must be between 1 and {self.num_classes} (the model's class count), got {top_k}")

    def top_k(self, probabilities: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and probabilities of the k best classes, best first (the library's order)."""
        self.check_top_k(top_k)
        indices = top_k_indices(probabilities, top_k)
        return indices, np.take_along_axis(probabilities, indices, axis=1)

    def predict_top_k(self, texts: list[str], top_k: int = 5, chunk_size: int = DEFAULT_CHUNK,
                      progress: Callable[[int, int], None] | None = None) -> TopK:
        self.check_top_k(top_k)
        probabilities = self.predict_proba(texts, chunk_size, progress)
        indices, values = self.top_k(probabilities, top_k)
        return TopK(list(texts), self._labels_array[indices], self._headings_array[indices], values)

    def predict(self, texts: list[str], top_k: int = 5, chunk_size: int = DEFAULT_CHUNK,
                progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
        return self.predict_top_k(texts, top_k, chunk_size, progress).predictions()

    # --- what explanations need: the embedding layer's output, and logits from a replacement of it -------------

    def explanation_inputs(self, ids: list[list[int]], full_width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and mask as the logits below expect them: cut to the longest where the cut path is exact."""
        from nace_app.model.forward import pad

        return pad(ids, max(len(seq) for seq in ids) if self.forward.can_cut else full_width, pad_id)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The token embedding layer's output (before the RMS normalisation every model applies)."""
        return self.model.token_embedder.embedding_layer(input_ids)

    def logits_from_embeddings(self, embeddings: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor,
                               full_width: int) -> torch.Tensor:
        """Logits with the embedding layer's output replaced by `embeddings` (rows of `input_ids`' shape)."""
        import torch

        if self.forward.can_cut:
            return self.forward.from_embeddings(embeddings, mask, full_width)
        rows = embeddings.shape[0]
        self._replacement.embeddings = embeddings
        try:  # architectures the cut path does not know: the library's forward, with the layer's output swapped
            return self.model(input_ids.expand(rows, -1) if len(input_ids) == 1 else input_ids, mask,
                              torch.empty((rows, 0)))
        finally:
            self._replacement.embeddings = None

    def _replace_embeddings(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """The embedding layer's hook: a per-thread swap, so that other sessions' forwards keep the real output."""
        return getattr(self._replacement, "embeddings", None)  # None keeps the layer's own output

    def unknown_token_share(self, text: str) -> float:
        """Share of the text's words (or WordPiece tokens) that the model has no entry for."""
        return unknown_word_share(self.tokenizer, text)

    def label_attention_weights(self, ids: list[list[int]], full_width: int, pad_id: int) -> torch.Tensor:
        """Label-attention models only: each class's attention over the tokens, mean over heads (texts, classes, width)."""
        import torch

        from nace_app.model.forward import pad

        input_ids, mask = pad(ids, full_width, pad_id)
        with torch.inference_mode():
            output = self.model(input_ids, mask, torch.empty((len(ids), 0)), return_label_attention_matrix=True)
        matrix = output["label_attention_matrix"]
        return matrix.mean(1) if matrix.dim() == 4 else matrix
