"""Sign disagreements between integrated gradients and leave-one-out, on hand-made scores."""

import pytest

from nace_app.explain.agreement import SignDisagreement, disagreement_line, sign_disagreements
from nace_app.explain.attributions import WordScore


def words(*scored: tuple[str, float]) -> list[WordScore]:
    """Words of a text made by joining them with spaces, with the given scores."""
    result, start = [], 0
    for word, score in scored:
        result.append(WordScore(word, start, start + len(word), score))
        start += len(word) + 1
    return result


def test_a_word_that_raises_the_logit_but_whose_removal_raises_the_probability_is_flagged():
    scored = words(("wholesale", 1.2), ("to", 0.1), ("restaurants", 0.72), ("fruit", -0.3))
    flags = sign_disagreements(scored, [0.20, 0.001, -0.031, 0.02])
    assert flags == [SignDisagreement("restaurants", 13, 24, 0.72, -0.031),  # + on the logit, removal raises P
                     SignDisagreement("fruit", 25, 30, -0.3, 0.02)]  # − on the logit, removal lowers P


def test_words_on_which_both_agree_are_not_flagged():
    assert sign_disagreements(words(("bakery", 2.0), ("closed", -0.5)), [0.4, -0.01]) == []


def test_only_the_top_words_by_absolute_attribution_are_looked_at():
    scored = words(("a", 0.01), ("b", -3.0), ("c", 2.0))
    drops = [-0.5, 0.1, -0.2]  # all three disagree
    assert [f.word for f in sign_disagreements(scored, drops, top=2)] == ["b", "c"]  # in text order
    assert [f.word for f in sign_disagreements(scored, drops, top=3)] == ["a", "b", "c"]


def test_values_that_display_as_zero_have_no_sign_to_disagree_with():
    scored = words(("of", 0.43), ("tiny", 0.001), ("the", 0.3))
    assert sign_disagreements(scored, [-0.00001, -0.2, -0.0004]) == []


def test_words_and_drops_must_pair_up():
    with pytest.raises(ValueError, match="2 words but 1 drops"):
        sign_disagreements(words(("a", 1.0), ("b", 1.0)), [0.1])


def test_the_line_names_each_word_with_both_numbers_and_says_nothing_when_they_agree():
    flags = sign_disagreements(words(("restaurants", 0.72), ("fruit", -0.3)), [-0.031, 0.02])
    assert disagreement_line(flags) == ("Integrated gradients and leave-one-out disagree on: "
                                        "restaurants (+0.72 vs +3.1 points without it), "
                                        "fruit (-0.30 vs -2.0 points without it)")
    assert disagreement_line([]) is None
