"""Where integrated gradients and leave-one-word-out disagree in sign on a word the views show.

The two measure different things: integrated gradients attribute the code's logit, leave-one-out measures the
change in its probability. A word can raise the code's logit and yet, removed, raise its probability (it raised a
rival's logit more), so a reader must be told on which words the two views point in opposite directions.
"""

from __future__ import annotations

from dataclasses import dataclass

from nace_app.explain.attributions import WordScore

TOP_WORDS = 10
SMALLEST_ATTRIBUTION = 0.005  # shown as +0.00: no sign to read
SMALLEST_DROP = 0.0005  # shown as +0.0 points: no sign to read


@dataclass(frozen=True)
class SignDisagreement:
    word: str
    start: int
    end: int
    attribution: float  # integrated gradients, on the logit
    drop: float  # probability with the word minus without it

    @property
    def summary(self) -> str:
        return f"{self.word} ({self.attribution:+.2f} vs {-self.drop * 100:+.1f} points without it)"


def sign_disagreements(words: list[WordScore], drops: list[float], top: int = TOP_WORDS) -> list[SignDisagreement]:
    """The words among the `top` by |attribution| where attribution and drop point opposite ways, in text order.

    A positive attribution says the word pushes toward the code; a positive drop says removing it lowers the
    code's probability: the two agree when their signs match. Values that display as zero have no sign.
    """
    if len(words) != len(drops):
        raise ValueError(f"{len(words)} words but {len(drops)} drops")
    ranked = sorted(range(len(words)), key=lambda i: abs(words[i].score), reverse=True)[:top]
    return [SignDisagreement(words[i].word, words[i].start, words[i].end, words[i].score, drops[i])
            for i in sorted(ranked)
            if abs(words[i].score) >= SMALLEST_ATTRIBUTION and abs(drops[i]) >= SMALLEST_DROP
            and (words[i].score > 0) != (drops[i] > 0)]


def disagreement_line(flags: list[SignDisagreement]) -> str | None:
    """One line naming every flagged word with both numbers, or None when the two views agree."""
    if not flags:
        return None
    return "Integrated gradients and leave-one-out disagree on: " + ", ".join(f.summary for f in flags)
