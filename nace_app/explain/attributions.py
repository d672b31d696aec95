"""Why a code: integrated gradients from a padding-token baseline, leave-one-word-out occlusion, label attention.

Every token vector is RMS-normalised right after the embedding lookup, so the model cannot see a token vector's
scale: from Captum's default zero baseline the path is flat at its start and the attributions do not add up to
the change in logit. The baseline here is the padding token at every position with the same attention mask; its
path is a real one, completeness holds, and the steps are doubled until the gap (`convergence_delta`) is under 1%
of the logit change. All requested candidates are explained in one batched pass; parameters get no gradients,
so sessions explain at the same time without a lock (only the interpolated embeddings are leaves of the graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from nace_app.explain.highlight import FLAG
from nace_app.model.classifier import Classifier
from nace_app.model.numpy_forward import EMBEDDING, rms
from nace_app.settings.errors import NaceAppError

if TYPE_CHECKING:
    import torch

STEP_SCHEDULE = (8, 16, 32, 64, 128, 256, 512)
TOLERANCE = 0.01


@dataclass(frozen=True)
class WordScore:
    word: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "score": self.score}


@dataclass
class Explanation:
    """Integrated-gradients attribution of one candidate code, per token and per word."""

    code: str
    probability: float
    words: list[WordScore]
    token_scores: np.ndarray
    attribution_total: float
    logit_delta: float
    steps: int
    offsets: list[tuple[int, int]] = field(default_factory=list)
    word_ids: list[int | None] = field(default_factory=list)

    @property
    def convergence_delta(self) -> float:
        return self.attribution_total - self.logit_delta

    @property
    def relative_gap(self) -> float:
        return abs(self.convergence_delta) / max(abs(self.logit_delta), 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return {"words": [w.to_dict() for w in self.words], "attribution_total": self.attribution_total,
                "logit_delta": self.logit_delta}


@cache
def gauss_legendre(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights on [0, 1]."""
    import torch

    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.tensor((nodes + 1) / 2, dtype=torch.float32), torch.tensor(weights / 2, dtype=torch.float32)


def words_of(text: str, offsets: list[tuple[int, int]], word_ids: list[int | None],
             token_scores: np.ndarray) -> list[WordScore]:
    """Sum token scores per word; `text[start:end] == word`."""
    spans: dict[int, list[int]] = {}
    scores: dict[int, float] = {}
    for position, word_id in enumerate(word_ids):
        if word_id is None:
            continue
        start, end = offsets[position]
        span = spans.setdefault(word_id, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
        scores[word_id] = scores.get(word_id, 0.0) + float(token_scores[position])
    return [WordScore(text[s:e], s, e, scores[w]) for w, (s, e) in sorted(spans.items())]


def integrated_gradients(classifier: Classifier, text: str, codes: list[str]) -> list[Explanation]:
    """Explain each code in `codes` for `text`, all in one batched pass per step count: in numpy for a mean-pooling
    model (the first explanation then waits for no torch import), with torch's autograd otherwise."""
    unknown = [c for c in codes if c not in classifier.label_index]
    if unknown:
        raise NaceAppError(f"code(s) not in the model's classes: {', '.join(unknown)}")
    if not codes:
        return []
    encoded = classifier.encode([text], with_offsets=True)
    ids = encoded.ids[0]
    targets = [classifier.label_index[c] for c in codes]
    paths = numpy_paths if classifier.numpy_forward is not None else torch_paths
    token_scores, logit_delta, steps = paths(classifier, ids, encoded.full_width, encoded.pad_id, targets)
    probabilities = classifier.predict_proba([text])[0]
    return [_explanation(text, code, float(probabilities[targets[row]]), token_scores[row], float(logit_delta[row]),
                         steps, encoded.offsets[0], encoded.word_ids[0], len(ids))
            for row, code in enumerate(codes)]


def torch_paths(classifier: Classifier, ids: list[int], full_width: int, pad_id: int,
                targets: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each candidate's token scores (over the padded width), its logit change from the baseline, and the steps
    used: torch's autograd through the model, any architecture."""
    import torch  # here, not at the top: predicting never needs torch, only explaining does

    input_ids, mask = classifier.explanation_inputs([ids], full_width, pad_id)
    reference_ids = torch.full_like(input_ids, pad_id)
    chosen_rows = torch.tensor(targets)
    k = len(targets)

    def logits_of(embeddings: torch.Tensor) -> torch.Tensor:
        return classifier.logits_from_embeddings(embeddings, input_ids, mask.expand(embeddings.shape[0], -1), full_width)

    with torch.inference_mode(False), torch.enable_grad():
        with torch.no_grad():
            emb_input = classifier.embed(input_ids)
            emb_reference = classifier.embed(reference_ids)
            end_logits = logits_of(torch.cat([emb_input, emb_reference]))
        logit_delta = (end_logits[0, chosen_rows] - end_logits[1, chosen_rows]).double()
        difference = emb_input - emb_reference
        for steps in STEP_SCHEDULE:
            alphas, weights = gauss_legendre(steps)
            path = emb_reference + alphas[:, None, None] * difference  # (steps, width, dim)
            batch = path.repeat(k, 1, 1).requires_grad_(True)  # candidate-major: rows [c*steps:(c+1)*steps]
            logits = logits_of(batch)
            chosen = logits[torch.arange(k * steps), chosen_rows.repeat_interleave(steps)].sum()
            (gradients,) = torch.autograd.grad(chosen, batch)
            mean_gradient = (gradients.view(k, steps, *gradients.shape[1:]) * weights[None, :, None, None]).sum(1)
            token_scores = (mean_gradient * difference).sum(-1).double()  # (k, width)
            gaps = (token_scores.sum(1) - logit_delta).abs()
            if bool((gaps <= TOLERANCE * logit_delta.abs().clamp_min(1e-6)).all()):
                break
    return token_scores.numpy(), logit_delta.numpy(), steps


def _explanation(text: str, code: str, probability: float, token_scores: np.ndarray, logit_delta: float, steps: int,
                 offsets: list[tuple[int, int]], word_ids: list[int | None], length: int) -> Explanation:
    """`token_scores` over the padded width; the total counts them all, the words the text's `length` tokens."""
    scores = token_scores[:length]
    return Explanation(code=code, probability=probability, words=words_of(text, offsets, word_ids, scores),
                       token_scores=scores, attribution_total=float(token_scores.sum()), logit_delta=logit_delta,
                       steps=steps, offsets=offsets, word_ids=word_ids)


def numpy_paths(classifier: Classifier, ids: list[int], full_width: int, pad_id: int,
                targets: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """`torch_paths` for a mean-pooling model, in numpy (float64) with the gradients written out: no torch.

    The model is `head(rms_norm(mean_t(rms_norm(e_t))))`; the gradient of `y = rms_norm(x) = x / rms(x)` is
    `(g - y (y . g) / D) / rms(x)`. The same padding baseline, Gauss-Legendre steps and doubling as the torch path
    (tests hold the two equal). Only the text's own tokens are on the path: padding adds nothing to a mean over real
    tokens.
    """
    ids = ids[:full_width]
    table = classifier.loaded.own.state[EMBEDDING]
    head = classifier.numpy_forward.head_weight_t.T[targets]  # (k, D) float64
    bias = classifier.numpy_forward.head_bias[targets]
    inputs = table[np.asarray(ids, dtype=np.int64)].astype(np.float64)  # (L, D)
    reference = np.broadcast_to(table[pad_id].astype(np.float64), inputs.shape)
    difference = inputs - reference
    length, dim = inputs.shape

    def chosen_logits(embeddings: np.ndarray) -> np.ndarray:  # (L, D) -> (k,)
        sentence = (embeddings / rms(embeddings)).mean(axis=0)
        return head @ (sentence / rms(sentence)) + bias

    logit_delta = chosen_logits(inputs) - chosen_logits(reference)
    for steps in STEP_SCHEDULE:
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        path = reference + ((nodes + 1) / 2)[:, None, None] * difference  # (S, L, D)
        token_norm = rms(path)  # (S, L, 1)
        tokens = path / token_norm
        pooled = tokens.mean(axis=1)  # (S, D)
        pooled_norm = rms(pooled)
        sentence = pooled / pooled_norm
        grad_sentence = head[:, None, :]  # (k, 1, D): d logit / d sentence
        grad_pooled = (grad_sentence - sentence * (sentence * grad_sentence).sum(-1, keepdims=True) / dim) / pooled_norm
        grad_tokens = grad_pooled / length  # (k, S, D): the same for every token
        # d logit / d path_t . difference_t, without building (k, S, L, D)
        along = np.einsum("ksd,td->kst", grad_tokens, difference)
        aligned = np.einsum("std,ksd->kst", tokens, grad_tokens) * np.einsum("std,td->st", tokens, difference)
        gradient_dot = (along - aligned / dim) / token_norm[..., 0]
        token_scores = np.einsum("kst,s->kt", gradient_dot, weights / 2)
        gaps = np.abs(token_scores.sum(axis=1) - logit_delta)
        if bool((gaps <= TOLERANCE * np.maximum(np.abs(logit_delta), 1e-6)).all()):
            break
    return token_scores, logit_delta, steps


def occlusion(classifier: Classifier, text: str, words: list[WordScore], codes: list[str]) -> dict[str, list[float]]:
    """Leave one word out: the drop in each code's probability when the word is removed (exact, one batch)."""
    variants = [text] + [text[: w.start] + text[w.end :] for w in words]
    probabilities = classifier.predict_proba(variants)
    result = {}
    for code in codes:
        column = classifier.label_index[code]
        result[code] = [float(probabilities[0, column] - p) for p in probabilities[1:, column]]
    return result


@dataclass(frozen=True)
class FaithfulnessCheck:
    word: str
    probability: float
    probability_without: float

    @property
    def drop(self) -> float:
        return self.probability - self.probability_without


def faithfulness(classifier: Classifier, text: str, explanation: Explanation) -> FaithfulnessCheck | None:
    """The code's probability with its most influential word removed, against the original."""
    if not explanation.words:
        return None
    top = max(explanation.words, key=lambda w: w.score)
    without = classifier.predict_proba([text[: top.start] + text[top.end :]])[0, classifier.label_index[explanation.code]]
    return FaithfulnessCheck(top.word, explanation.probability, float(without))


def label_attention(classifier: Classifier, text: str, codes: list[str]) -> dict[str, list[WordScore]]:
    """For models trained with label attention: each code's attention over the words (averaged over heads)."""
    if not classifier.has_label_attention:
        raise NaceAppError("this model was not trained with label attention")
    encoded = classifier.encode([text], with_offsets=True)
    matrix = classifier.label_attention_weights(encoded.ids, encoded.full_width, encoded.pad_id)[0]  # (classes, tokens)
    return {
        code: words_of(text, encoded.offsets[0], encoded.word_ids[0],
                       matrix[classifier.label_index[code], : len(encoded.ids[0])].numpy())
        for code in codes
    }


def char_view(explanation: Explanation, text: str) -> np.ndarray:
    """The reference notebook's character view, as torchTextClassifiers' `map_attributions_to_char` computes it
    (tested equal; importing the library for it would cost the server seconds and a gigabyte): each character takes
    its token's score (the last token covering it), then a softmax over the characters."""
    per_char = np.zeros(len(text))
    for score, (start, end) in zip(explanation.token_scores, explanation.offsets, strict=True):
        if start != end:  # special tokens cover no character
            per_char[start:end] = score
    weights = np.exp(per_char)
    return weights / weights.sum()


def contrast(first: Explanation, second: Explanation) -> list[tuple[int, int, float]]:
    """Why `first` rather than `second`: the difference of their word attributions (same words, same spans)."""
    second_scores = {(w.start, w.end): w.score for w in second.words}
    return [(w.start, w.end, w.score - second_scores.get((w.start, w.end), 0.0)) for w in first.words]


def spans(words: list[WordScore]) -> list[tuple[int, int, float]]:
    return [(w.start, w.end, w.score) for w in words]


def disagreement(explanation: Explanation, drops: list[float]) -> str | None:
    """A warning when integrated gradients and leave-one-word-out disagree on the most influential word."""
    if len(explanation.words) < 2 or not drops:
        return None
    by_gradients = max(range(len(explanation.words)), key=lambda i: explanation.words[i].score)
    by_occlusion = max(range(len(drops)), key=lambda i: drops[i])
    if by_gradients == by_occlusion:
        return None
    return (f"The two methods disagree: integrated gradients credit “{explanation.words[by_gradients].word}” most, "
            f"removing “{explanation.words[by_occlusion].word}” lowers the probability most. Words interact here; "
            "read both views.")


def word_table(words: list[WordScore], flagged: frozenset[tuple[int, int]]) -> pl.DataFrame:
    """Each word's score, and `FLAG` where leave-one-out disagrees with its sign. A polars frame: Streamlit turns
    any other table into pandas, whose import costs seconds on a server's first click."""
    return pl.DataFrame({"word": [w.word for w in words], "score": [w.score for w in words],
                         "leave-one-out": [FLAG if (w.start, w.end) in flagged else "" for w in words]},
                        schema={"word": pl.String, "score": pl.Float64, "leave-one-out": pl.String})
