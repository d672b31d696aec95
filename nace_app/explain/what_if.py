"""What if the description said something else: the codes of two texts side by side, and the words that changed
(LIT's counterfactual editor). Also serves two models on one text: the same table, with a model per side."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from nace_app.model.classifier import Classifier

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class WordChange:
    """One difference between the texts: `kind` is 'removed', 'added' or 'replaced'."""

    kind: str
    before: str
    after: str

    def sentence(self) -> str:
        if self.kind == "removed":
            return f"removed “{self.before}”"
        if self.kind == "added":
            return f"added “{self.after}”"
        return f"“{self.before}” → “{self.after}”"


def words_of(text: str) -> list[str]:
    """The words as the user typed them (split on white space, punctuation kept)."""
    return _WORD.findall(text)


def without_word(text: str, word: str) -> str:
    """`text` without the first occurrence of `word` (a whole word), spaces tidied."""
    match = next((m for m in _WORD.finditer(text) if m.group() == word), None)
    if match is None:
        return text
    return (text[: match.start()].rstrip() + " " + text[match.end():].lstrip()).strip()


def word_changes(before: str, after: str) -> list[WordChange]:
    """The words removed, added or replaced from `before` to `after` (a word diff, in text order)."""
    old, new = _WORD.findall(before), _WORD.findall(after)
    changes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        kind = {"delete": "removed", "insert": "added", "replace": "replaced"}[tag]
        changes.append(WordChange(kind, " ".join(old[i1:i2]), " ".join(new[j1:j2])))
    return changes


def compare_probabilities(labels: list[str], before: np.ndarray, after: np.ndarray, top_k: int,
                          headings: list[str]) -> pl.DataFrame:
    """The union of both sides' top-k codes with each side's probability and rank, and the change (after - before).

    Rows are ordered by the larger of the two probabilities, so the codes that matter on either side come first.
    """
    k = min(top_k, len(labels))
    rank_before = np.empty(len(labels), dtype=np.int64)
    rank_before[np.argsort(-before, kind="stable")] = np.arange(1, len(labels) + 1)
    rank_after = np.empty(len(labels), dtype=np.int64)
    rank_after[np.argsort(-after, kind="stable")] = np.arange(1, len(labels) + 1)
    shown = np.flatnonzero((rank_before <= k) | (rank_after <= k))
    shown = shown[np.argsort(-np.maximum(before[shown], after[shown]), kind="stable")]
    return pl.DataFrame({
        "code": [labels[i] for i in shown], "heading": [headings[i] for i in shown],
        "rank_before": rank_before[shown], "probability_before": before[shown].astype(np.float64),
        "rank_after": rank_after[shown], "probability_after": after[shown].astype(np.float64),
        "change": (after[shown] - before[shown]).astype(np.float64),
    })


def what_if(classifier: Classifier, original: str, edited: str, top_k: int) -> pl.DataFrame:
    """One model, two texts: how each code's probability moves when `original` becomes `edited`."""
    probabilities = classifier.predict_proba([original, edited])
    return compare_probabilities(classifier.labels, probabilities[0], probabilities[1], top_k,
                                 [classifier.nomenclature.heading(c) for c in classifier.labels])


def two_models(first: Classifier, second: Classifier, text: str, top_k: int) -> pl.DataFrame:
    """Two models, one text: each code's probability under the first and the second (codes either model knows)."""
    labels = sorted(set(first.labels) | set(second.labels))
    position = {code: i for i, code in enumerate(labels)}

    def on_all_labels(classifier: Classifier) -> np.ndarray:
        probabilities = np.zeros(len(labels))
        probabilities[[position[c] for c in classifier.labels]] = classifier.predict_proba([text])[0]
        return probabilities

    return compare_probabilities(labels, on_all_labels(first), on_all_labels(second), top_k,
                                 [first.nomenclature.heading(c) for c in labels])
