"""One closed follow-up question when the prediction set holds several codes, built from the nomenclature alone.

As ONS's Survey Assist: ask about the most useful discriminator. The candidates are the stage in the value chain
(makes, sells wholesale, sells retail, repairs, rents, acts as an intermediary), read from the class's section,
division and heading; the product family (the division, or the group inside one division), named by its official
heading; and the customer (households or businesses) where the headings say it. Every answer names the codes it
keeps and the answers partition the set; the question kept is the one leaving the fewest codes expected, weighing
each answer by the model's probability of its codes. No language model, no text but the official headings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from nace_app.nomenclature.structure import Nomenclature

STAGE, PRODUCT, CUSTOMER = "stage", "product", "customer"
STAGE_QUESTION = "Which best describes what the business does?"
STAGE_ANSWERS = {  # key: the answer a respondent reads, in the order shown
    "manufacture": "It makes or processes the goods",
    "wholesale": "It sells goods to other businesses (wholesale)",
    "retail": "It sells goods to the public (retail)",
    "repair": "It repairs or maintains",
    "rental": "It rents out or leases",
    "intermediation": "It acts as an agent or intermediary, on commission",
    "other": "Something else (grows, builds, transports, provides a service…)",
}
CUSTOMER_QUESTION = "Who are its customers, mostly?"
CUSTOMER_ANSWERS = {"households": "Households and private persons", "businesses": "Businesses and organisations"}
_INTERMEDIARY = re.compile(r"intermediation|\bagents?\b|\bbrok(?:er|ers|ering|erage)\b", re.IGNORECASE)
_HOUSEHOLDS = re.compile(r"household|personal|\bconsumer|\bhome\b|\bretail", re.IGNORECASE)
_BUSINESSES = re.compile(r"\bbusiness|industrial|\bwholesale|\boffice\b|agricultural machinery|construction machinery",
                         re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    key: str  # what the link records: a stage, a division or group code, or a customer
    answer: str
    codes: list[str]


@dataclass(frozen=True)
class FollowUp:
    kind: str  # STAGE, PRODUCT or CUSTOMER
    question: str
    answers: list[Answer]

    def to_dict(self) -> dict:
        """`{"question", "answers": [{"answer", "codes"}]}`, as the command line writes it."""
        return {"question": self.question, "answers": [{"answer": a.answer, "codes": a.codes} for a in self.answers]}

    def answer(self, key: str) -> Answer | None:
        return next((a for a in self.answers if a.key == key), None)


def stage_of(nomenclature: Nomenclature, code: str) -> str:
    """The value-chain stage of a class, from its section, division and official heading."""
    heading = nomenclature.heading(code)
    division = code[:2]
    if _INTERMEDIARY.search(heading):
        return "intermediation"
    if heading.startswith("Repair"):
        return "repair"
    if heading.startswith(("Rental", "Renting", "Leasing")):
        return "rental"
    if division == "46":
        return "wholesale"
    if division == "47":
        return "retail"
    if nomenclature.section_of(code) == "C" and division != "33":
        return "manufacture"
    return "other"


def customer_of(nomenclature: Nomenclature, code: str) -> str | None:
    """Households or businesses where the heading (or retail/wholesale) says it; None where it does not."""
    heading = nomenclature.heading(code)
    households, businesses = bool(_HOUSEHOLDS.search(heading)), bool(_BUSINESSES.search(heading))
    if code[:2] == "47" or (households and not businesses):
        return "households"
    if code[:2] == "46" or (businesses and not households):
        return "businesses"
    return None


def product_family(nomenclature: Nomenclature, codes: list[str]) -> str:
    """The level that tells the codes apart: their divisions, or their groups when they share one division."""
    return "division" if len({nomenclature.truncate(c, "division") for c in codes}) > 1 else "group"


def _partition(codes: list[str], key_of: Callable[[str], str | None]) -> dict[str, list[str]] | None:
    groups: dict[str, list[str]] = {}
    for code in codes:
        key = key_of(code)
        if key is None:
            return None
        groups.setdefault(key, []).append(code)
    return groups if len(groups) > 1 else None


def candidate_questions(nomenclature: Nomenclature, codes: list[str]) -> list[FollowUp]:
    """Every question whose answers split `codes` in two or more, in Survey Assist's order of preference."""
    questions = []
    stages = _partition(codes, lambda c: stage_of(nomenclature, c))
    if stages:
        questions.append(FollowUp(STAGE, STAGE_QUESTION, [Answer(k, STAGE_ANSWERS[k], stages[k])
                                                          for k in STAGE_ANSWERS if k in stages]))
    level = product_family(nomenclature, codes)
    families = _partition(codes, lambda c: nomenclature.truncate(c, level))
    if families:
        questions.append(FollowUp(PRODUCT, "Which of these best describes its main products or services?",
                                  [Answer(k, nomenclature.heading(k), v) for k, v in sorted(families.items())]))
    customers = _partition(codes, lambda c: customer_of(nomenclature, c))
    if customers:
        questions.append(FollowUp(CUSTOMER, CUSTOMER_QUESTION, [Answer(k, CUSTOMER_ANSWERS[k], customers[k])
                                                                for k in CUSTOMER_ANSWERS if k in customers]))
    return questions


def expected_codes_left(question: FollowUp, weights: dict[str, float]) -> float:
    """The set size left after the answer, averaged over answers weighted by the model's probability of each."""
    masses = np.array([sum(weights.get(c, 0.0) for c in a.codes) for a in question.answers])
    sizes = np.array([len(a.codes) for a in question.answers], dtype=float)
    total = masses.sum()
    shares = masses / total if total > 0 else np.full(len(sizes), 1 / len(sizes))
    return float(shares @ sizes)


def follow_up(nomenclature: Nomenclature, codes: list[str], probabilities: list[float] | None = None) -> FollowUp | None:
    """The question that splits the set best (fewest codes expected to remain; ties go to the earlier kind), or
    None for a set of one code or one no question splits."""
    if len(codes) < 2:
        return None
    weights = dict(zip(codes, probabilities or [1.0] * len(codes), strict=True))
    questions = candidate_questions(nomenclature, codes)
    return min(questions, key=lambda q: expected_codes_left(q, weights)) if questions else None


def keep_answer(codes: list[str], probabilities: list[float], answer: Answer) -> list[tuple[str, float]]:
    """The codes the answer keeps, re-ranked with their probabilities renormalised over them."""
    kept = [(c, p) for c, p in zip(codes, probabilities, strict=True) if c in answer.codes]
    total = sum(p for _, p in kept)
    return sorted(((c, p / total if total > 0 else 1 / len(kept)) for c, p in kept), key=lambda item: -item[1])


def true_answer_key(nomenclature: Nomenclature, question: FollowUp, true_code: str) -> str | None:
    """The answer a respondent whose activity is `true_code` gives: the option holding it, else the one of its kind."""
    for answer in question.answers:
        if true_code in answer.codes:
            return answer.key
    if question.kind == STAGE:
        key = stage_of(nomenclature, true_code)
    elif question.kind == CUSTOMER:
        key = customer_of(nomenclature, true_code)
    else:
        key = nomenclature.truncate(true_code, "group" if len(question.answers[0].key) > 2 else "division")
    return key if question.answer(key or "") else None


@dataclass(frozen=True)
class FollowUpFigures:
    """A simulated respondent on labelled rows: the rows whose set holds 2+ codes get the question; each answers
    truthfully (the option holding its true code; where none does, the option of its kind, or none)."""

    rows: int
    asked_share: float
    mean_set_size_before: float  # over the rows asked
    mean_set_size_after: float
    top1_before: float  # over the rows asked
    top1_after: float
    misled_share: float  # of the rows asked: no option holds the true code
    unanswered_share: float  # of the rows asked: no option fits at all, the set is kept

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_respondent(nomenclature: Nomenclature, sets: list[list[str]], set_probabilities: list[list[float]],
                        true_codes: list[str]) -> FollowUpFigures:
    """Each row's set (most probable first) and its probabilities, against the row's true code."""
    asked = before = after = right_before = right_after = misled = unanswered = 0
    for codes, probabilities, true in zip(sets, set_probabilities, true_codes, strict=True):
        question = follow_up(nomenclature, codes, probabilities)
        if question is None:
            continue
        asked += 1
        before += len(codes)
        right_before += codes[0] == true
        misled += not any(true in a.codes for a in question.answers)
        key = true_answer_key(nomenclature, question, true)
        if key is None:
            unanswered += 1
            kept = list(zip(codes, probabilities, strict=True))
        else:
            kept = keep_answer(codes, probabilities, question.answer(key))
        after += len(kept)
        right_after += kept[0][0] == true
    share = (lambda count: count / asked) if asked else (lambda count: float("nan"))
    return FollowUpFigures(len(sets), asked / len(sets) if sets else float("nan"), share(before), share(after),
                           share(right_before), share(right_after), share(misled), share(unanswered))
