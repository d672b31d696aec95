"""Plain helpers behind the Predict page: examples, shared-link parsing, word scores for highlighting."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nace_app.explain import Explanation, WordScore

MAX_CHARS = 2000
MAX_TOP_K = 10
DEFAULT_TOP_K = 5
EXAMPLES = (
    "I sell croissants and pains au chocolat in my bakery",
    "I develop business management software for companies",
    "I repair cars and carry out technical inspections",
    "Wholesale of fresh fruit and vegetables to restaurants",
    "we rent out holiday cottages by the week",
    "Installation of solar panels on private roofs",
    "Dog grooming salon with a small pet shop",
    "manufacture of wooden pallets and crates",
)
_CODE = re.compile(r"^[A-Z0-9.]{1,8}$")


@dataclass(frozen=True)
class SharedView:
    text: str
    top_k: int
    code: str | None


def parse_query(params: dict[str, str]) -> SharedView:
    """Read `text`, `k` and `code` from a link, bounding and validating each (links are untrusted)."""
    text = str(params.get("text", ""))[:MAX_CHARS]
    try:
        top_k = min(max(int(params.get("k", DEFAULT_TOP_K)), 1), MAX_TOP_K)
    except ValueError:
        top_k = DEFAULT_TOP_K
    code = str(params.get("code", ""))
    return SharedView(text, top_k, code if _CODE.match(code) else None)


def word_triples(words: list[WordScore]) -> list[tuple[int, int, float]]:
    return [(w.start, w.end, w.score) for w in words]


def contrast(first: Explanation, second: Explanation) -> list[tuple[int, int, float]]:
    """Why `first` rather than `second`: the difference of their word attributions (same words, same spans)."""
    second_scores = {(w.start, w.end): w.score for w in second.words}
    return [(w.start, w.end, w.score - second_scores.get((w.start, w.end), 0.0)) for w in first.words]
