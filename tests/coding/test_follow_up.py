"""The follow-up question: built from the nomenclature, its answers partition the set, and the simulated respondent."""

import random

import pytest

from nace_app.coding.follow_up import (
    CUSTOMER,
    PRODUCT,
    STAGE,
    Answer,
    candidate_questions,
    follow_up,
    keep_answer,
    simulate_respondent,
    stage_of,
)
from nace_app.nomenclature.structure import load_nomenclature

NACE = load_nomenclature()


def test_a_set_mixing_making_wholesale_and_retail_asks_the_value_chain_stage():
    question = follow_up(NACE, ["10.71", "46.36", "47.24"], [0.5, 0.3, 0.2])
    assert question.kind == STAGE
    assert {a.key: a.codes for a in question.answers} == {"manufacture": ["10.71"], "wholesale": ["46.36"],
                                                          "retail": ["47.24"]}
    assert question.to_dict()["answers"][0] == {"answer": "It makes or processes the goods", "codes": ["10.71"]}


@pytest.mark.parametrize(("code", "stage"), [("33.12", "repair"), ("95.31", "repair"), ("77.11", "rental"),
                                             ("46.11", "intermediation"), ("47.91", "intermediation"),
                                             ("66.22", "intermediation"), ("25.11", "manufacture"),
                                             ("33.20", "other"), ("62.10", "other")])
def test_the_stage_comes_from_the_section_division_and_heading(code, stage):
    assert stage_of(NACE, code) == stage


def test_one_stage_in_several_divisions_asks_the_product_family_by_its_heading():
    question = follow_up(NACE, ["10.71", "11.05", "10.72"], [0.4, 0.35, 0.25])
    assert question.kind == PRODUCT
    assert [(a.key, a.answer, a.codes) for a in question.answers] == [
        ("10", NACE.heading("10"), ["10.71", "10.72"]), ("11", NACE.heading("11"), ["11.05"])]
    within_one_division = follow_up(NACE, ["47.21", "47.24", "47.11"], [0.4, 0.35, 0.25])
    assert within_one_division.kind == PRODUCT and {a.key for a in within_one_division.answers} == {"47.2", "47.1"}


def test_the_question_kept_is_the_one_leaving_fewest_codes_expected():
    codes = ["46.42", "47.72", "47.71"]  # stage: {46.42} | {47.72, 47.71}; product (divisions 46 | 47): the same
    assert follow_up(NACE, codes, [0.1, 0.5, 0.4]).kind == STAGE  # a tie goes to the stage
    rentals = {q.kind: q for q in candidate_questions(NACE, ["77.22", "77.33"])}  # household goods | office machines
    assert [(a.key, a.codes) for a in rentals[CUSTOMER].answers] == [("households", ["77.22"]), ("businesses", ["77.33"])]


def test_a_set_of_one_code_or_that_no_question_splits_gets_none():
    assert follow_up(NACE, ["10.71"], [1.0]) is None
    assert follow_up(NACE, ["62.10", "62.10"], [0.5, 0.5]) is None


def test_answers_partition_the_set_for_any_set_of_real_classes():
    classes = NACE.codes("class")
    rng = random.Random(0)
    for _ in range(300):
        codes = rng.sample(classes, rng.randint(2, 12))
        for question in candidate_questions(NACE, codes):
            kept = [code for answer in question.answers for code in answer.codes]
            assert sorted(kept) == sorted(codes) and len(question.answers) >= 2
            assert all(answer.codes for answer in question.answers)


def test_an_answer_keeps_its_codes_re_ranked_with_renormalised_probabilities():
    kept = keep_answer(["46.42", "47.72", "47.71"], [0.5, 0.2, 0.3], Answer("retail", "", ["47.72", "47.71"]))
    assert kept == [("47.71", pytest.approx(0.6)), ("47.72", pytest.approx(0.4))]


def test_the_simulated_respondent_on_a_hand_made_case():
    sets = [["10.71", "47.24"],  # asked; the true 47.24 is second: the retail answer makes it first
            ["46.42", "47.72", "47.71"],  # asked; true 47.71 kept with 47.72, still second after re-ranking
            ["62.10"],  # one code: not asked
            ["10.71", "46.36"]]  # asked; the true 47.24 is in no option, but its stage (retail) is none either
    probabilities = [[0.6, 0.4], [0.5, 0.3, 0.2], [1.0], [0.7, 0.3]]
    figures = simulate_respondent(NACE, sets, probabilities, ["47.24", "47.71", "62.10", "47.24"])
    assert figures.rows == 4 and figures.asked_share == 0.75
    assert figures.mean_set_size_before == pytest.approx((2 + 3 + 2) / 3)
    assert figures.mean_set_size_after == pytest.approx((1 + 2 + 2) / 3)
    assert figures.top1_before == 0 and figures.top1_after == pytest.approx(1 / 3)
    assert figures.misled_share == pytest.approx(1 / 3) and figures.unanswered_share == pytest.approx(1 / 3)


def test_a_respondent_whose_code_is_outside_the_set_still_answers_by_its_kind():
    question = follow_up(NACE, ["10.71", "47.24"], [0.6, 0.4])
    assert (question.kind, [a.key for a in question.answers]) == (STAGE, ["manufacture", "retail"])
    figures = simulate_respondent(NACE, [["10.71", "47.24"]], [[0.6, 0.4]], ["47.11"])  # retail, not in the set
    assert figures.misled_share == 1 and figures.unanswered_share == 0 and figures.mean_set_size_after == 1
