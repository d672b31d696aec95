"""What the Predict page decides, without Streamlit: input limits, examples, which code is explained, the verdict."""

from __future__ import annotations

from dataclasses import dataclass

from nace_app.model.classifier import Prediction
from nace_app.nomenclature.structure import Nomenclature
from nace_app.review.calibration import GUARANTEE_COVERS, SET_RULE, RuleRecord, other_rule

MAX_CHARS = 2000
MAX_TOP_K = 10
DEFAULT_TOP_K = 5
UNKNOWN_WARNING_SHARE = 0.5
EXAMPLES: dict[str, str] = {  # the example pills: each text and the NACE Rev 2.1 class a careful coder gives it
    "I sell croissants and pains au chocolat in my bakery": "10.71",  # a bakery bakes what it sells: manufacture
    "I develop custom business management software for client companies": "62.10",  # made to order, not published
    "I repair cars and carry out technical inspections": "95.31",  # repair first; inspections alone would be 71.20
    "Wholesale of fresh fruit and vegetables to restaurants": "46.31",
    "we rent out holiday cottages by the week": "55.20",
    "Installation of solar panels on private roofs": "43.21",  # photovoltaic: electrical installation
    "Dog grooming salon with a small pet shop": "96.99",  # grooming is the main activity; the shop alone is 47.76
    "manufacture of wooden pallets and crates": "16.24",
}


@dataclass(frozen=True)
class PreparedText:
    text: str
    cut_from: int | None  # the length the user typed, when it was over MAX_CHARS


def prepare(text: str) -> PreparedText:
    if len(text) > MAX_CHARS:
        return PreparedText(text[:MAX_CHARS], len(text))
    return PreparedText(text, None)


def explained_code(codes: list[str], current: str | None, wanted: str | None) -> str:
    """Keep the code the user is looking at when it is still shown; else the linked one; else the best."""
    if current in codes:
        return current
    return wanted if wanted in codes else codes[0]


def rival_code(codes: list[str], selected: str, current: str | None, wanted: str | None) -> str | None:
    others = [c for c in codes if c != selected]
    if not others:
        return None
    return explained_code(others, current, wanted)


@dataclass(frozen=True)
class Verdict:
    score_name: str
    score: float
    threshold: float

    @property
    def automatic(self) -> bool:
        return self.score >= self.threshold

    @property
    def sentence(self) -> str:
        outcome = "would be coded automatically" if self.automatic else "goes to manual review"
        return f"{self.score_name} {self.score:.3f} against the threshold {self.threshold:.2f}: this description {outcome}."


def verdict(prediction: Prediction, score_name: str, threshold: float) -> Verdict:
    """The same rule as the Review page: the named score of the best ten candidates against the threshold."""
    from nace_app.review.metrics import CONFIDENCE_INDEX

    score = prediction.confidence_index if score_name == CONFIDENCE_INDEX else prediction.candidates[0].probability
    return Verdict(score_name, float(score), threshold)


def nace_path(nomenclature: Nomenclature, code: str) -> str:
    """Section › division › group of a class, for the candidate cards."""
    return " › ".join(f"{step.code} {step.heading}" for step in nomenclature.path(code)[:-1]) or "unknown code"


def points(value: float) -> str:
    """A difference of two probabilities, in percentage points."""
    return f"{value * 100:+.1f} points"


SET_CODES_SHOWN = 8


def set_sentence(codes: list[str], level: float) -> str:
    """The prediction set as the candidates card says it: its codes, and what its guarantee covers."""
    shown = ", ".join(f"`{code}`" for code in codes[:SET_CODES_SHOWN])
    more = f" and {len(codes) - SET_CODES_SHOWN} more" if len(codes) > SET_CODES_SHOWN else ""
    size = "one code" if len(codes) == 1 else f"{len(codes)} codes"
    return f"{level:.0%} prediction set ({GUARANTEE_COVERS}): {shown}{more} · {size}"


@dataclass(frozen=True)
class Decision:
    """The one verdict the Predict page shows: the sidebar's rule, with how often it was right on shifted text."""

    automatic: bool
    sentence: str
    alternative: str  # the other rule, labelled "Alternative rule: …"


def _applies(rule: str, prediction: Prediction, set_size: int | None, score_name: str, threshold: float) -> tuple[bool, str]:
    """Whether `rule` codes this description automatically, and why in a few words."""
    if rule == SET_RULE:
        if set_size is None:
            return False, "no prediction set"
        return set_size == 1, "its set holds one code" if set_size == 1 else f"its set holds {set_size} codes"
    rule_verdict = verdict(prediction, score_name, threshold)
    sign = "≥" if rule_verdict.automatic else "<"
    return rule_verdict.automatic, f"{score_name} {rule_verdict.score:.3f} {sign} {threshold:.2f}"


def decision(prediction: Prediction, set_size: int | None, rule: str, score_name: str, threshold: float,
             chosen: RuleRecord, other: RuleRecord) -> Decision:
    """The chosen rule's verdict; "automatically" only ever next to the rule's measured accuracy on shifted text."""
    automatic, why = _applies(rule, prediction, set_size, score_name, threshold)
    outcome = "Code automatically" if automatic else "Send to manual review"
    sentence = f"{outcome} ({why}): the rule ({chosen.description}) {chosen.measured}."
    other_automatic, other_why = _applies(other_rule(rule), prediction, set_size, score_name, threshold)
    other_outcome = "code it automatically" if other_automatic else "send it to manual review"
    alternative = (f"Alternative rule: {other.description} would {other_outcome} ({other_why}); it {other.measured}.")
    return Decision(automatic, sentence, alternative)
