"""Behavioural tests: does the top code survive the small edits people make when they type (Azimuth's idea)?

Each edit is a pure function of the text and a random generator seeded per (seed, edit, row), so a row gets the same
edited text whatever rows are tested with it, and a report is the same on every run. An edit that does not apply
to a text (word order of a text that is not two words) returns None: that row is left out of that edit's share.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from nace_app.model.classifier import Classifier

DEFAULT_SEED = 0
DEFAULT_ROWS = 1000  # a seeded sample of the test split: six edits of 6,000 rows take minutes on a shared CPU
STOP_WORDS = ("the", "a", "an", "and", "of", "in", "for", "to", "with", "on", "my", "our", "at", "by")
_WORD = re.compile(r"\w+")
_LETTERS = re.compile(r"[^\W\d_]{4,}")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def _typo(text: str, rng: random.Random) -> str | None:
    """Two neighbouring letters swapped inside a word of four letters or more."""
    words = [m for m in _LETTERS.finditer(text) if len(set(m.group().lower())) > 1]
    if not words:
        return None
    word = rng.choice(words)
    positions = [i for i in range(word.start(), word.end() - 1) if text[i].lower() != text[i + 1].lower()]
    at = rng.choice(positions)
    return text[:at] + text[at + 1] + text[at] + text[at + 2:]


def _case(text: str, rng: random.Random) -> str | None:
    """All lower case; a text already in lower case gets capitals at the start of each word."""
    lower = text.lower()
    changed = lower if lower != text else _WORD.sub(lambda m: m.group()[:1].upper() + m.group()[1:], text)
    return changed if changed != text else None


def _punctuation(text: str, rng: random.Random) -> str | None:
    """Punctuation removed; a text with none gets a full stop at the end."""
    if _PUNCTUATION.search(text):
        return re.sub(r"\s{2,}", " ", _PUNCTUATION.sub(" ", text)).strip()
    return text.rstrip() + "."


def _stop_word_dropped(text: str, rng: random.Random) -> str | None:
    found = [m for m in _WORD.finditer(text) if m.group().lower() in STOP_WORDS]
    if not found or len(_WORD.findall(text)) < 2:
        return None
    word = rng.choice(found)
    return (text[:word.start()].rstrip() + " " + text[word.end():].lstrip()).strip()


def _stop_word_added(text: str, rng: random.Random) -> str | None:
    """'the' before a word drawn at random."""
    words = list(_WORD.finditer(text))
    if not words:
        return None
    at = rng.choice(words).start()
    return text[:at] + "the " + text[at:]


def _word_order(text: str, rng: random.Random) -> str | None:
    """The two words of a two-word query swapped (longer texts are left out: order carries their meaning)."""
    words = text.split()
    return f"{words[1]} {words[0]}" if len(words) == 2 and words[0].lower() != words[1].lower() else None


EDITS: dict[str, Callable[[str, random.Random], str | None]] = {
    "typo": _typo, "case": _case, "punctuation": _punctuation, "stop word dropped": _stop_word_dropped,
    "stop word added": _stop_word_added, "word order (two words)": _word_order,
}


def edited(text: str, edit: str, seed: int, row: int) -> str | None:
    """`text` after `edit`, the same for the same (seed, edit, row); None where the edit does not apply."""
    return EDITS[edit](text, random.Random(f"{seed}|{edit}|{row}"))


def sample_rows(total: int, rows: int, seed: int) -> np.ndarray:
    """Which test rows are tested: all of them, or a seeded sample in row order."""
    if total <= rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


@dataclass(frozen=True)
class RobustnessReport:
    """Per edit: rows tested and the share whose top code stayed; the flipped rows with both texts and codes."""

    seed: int
    rows: int
    summary: pl.DataFrame  # edit, rows, unchanged, unchanged_share, same_tokens, right_to_wrong
    flips: pl.DataFrame  # row, edit, text, edited_text, true_code, code_before, code_after


def robustness_report(classifier: Classifier, texts: list[str], true_codes: list[str], predicted_codes: list[str],
                      seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS,
                      progress: Callable[[int, int], None] | None = None) -> RobustnessReport:
    """Edit each sampled row once per edit type and compare the edited text's top code with `predicted_codes`."""
    tested = sample_rows(len(texts), rows, seed)
    summary, flips = [], []
    for done, edit in enumerate(EDITS, start=1):
        pairs = [(int(i), variant) for i in tested if (variant := edited(texts[i], edit, seed, int(i))) is not None]
        variants = [v for _, v in pairs]
        after = [classifier.labels[j] for j in classifier.predict_proba(variants).argmax(axis=1)] if pairs else []
        same_tokens = sum(a == b for a, b in zip(classifier.encode([texts[i] for i, _ in pairs]).ids,
                                                 classifier.encode(variants).ids, strict=True)) if pairs else 0
        unchanged = right_to_wrong = 0
        for (i, variant), code in zip(pairs, after, strict=True):
            if code == predicted_codes[i]:
                unchanged += 1
                continue
            right_to_wrong += predicted_codes[i] == true_codes[i]
            flips.append({"row": i, "edit": edit, "text": texts[i], "edited_text": variant, "true_code": true_codes[i],
                          "code_before": predicted_codes[i], "code_after": code})
        summary.append({"edit": edit, "rows": len(pairs), "unchanged": unchanged,
                        "unchanged_share": unchanged / len(pairs) if pairs else None, "same_tokens": same_tokens,
                        "right_to_wrong": right_to_wrong})
        if progress is not None:
            progress(done, len(EDITS))
    flip_schema = {"row": pl.Int64, "edit": pl.String, "text": pl.String, "edited_text": pl.String,
                   "true_code": pl.String, "code_before": pl.String, "code_after": pl.String}
    return RobustnessReport(seed, len(tested), pl.DataFrame(summary, schema={
        "edit": pl.String, "rows": pl.Int64, "unchanged": pl.Int64, "unchanged_share": pl.Float64,
        "same_tokens": pl.Int64, "right_to_wrong": pl.Int64}), pl.DataFrame(flips, schema=flip_schema))
