"""The Predict page's decisions: which code is explained, the verdict, input limits."""

from nace_app.coding.predicting import MAX_CHARS, explained_code, nace_path, points, prepare, rival_code, verdict
from nace_app.model.classifier import Candidate, Prediction
from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review.metrics import CONFIDENCE_INDEX, TOP1_PROBABILITY

PREDICTION = Prediction("bread", [Candidate("10.71", "", 0.6), Candidate("47.24", "", 0.3), Candidate("56.10", "", 0.1)])


def test_the_explained_code_stays_while_shown_else_the_linked_one_else_the_best():
    assert explained_code(["10.71", "47.24"], "47.24", None) == "47.24"
    assert explained_code(["10.71", "47.24"], "56.10", "47.24") == "47.24"
    assert explained_code(["10.71", "47.24"], None, "99.99") == "10.71"
    assert rival_code(["10.71"], "10.71", None, None) is None
    assert rival_code(["10.71", "47.24", "56.10"], "10.71", None, "56.10") == "56.10"


def test_the_verdict_uses_the_named_score():
    assert verdict(PREDICTION, TOP1_PROBABILITY, 0.5).automatic
    by_gap = verdict(PREDICTION, CONFIDENCE_INDEX, 0.5)
    assert not by_gap.automatic and abs(by_gap.score - 0.3) < 1e-9
    assert by_gap.sentence.startswith("confidence index 0.300 against the threshold 0.50")


def test_long_text_is_cut_and_says_how_long_it_was():
    prepared = prepare("x" * (MAX_CHARS + 10))
    assert len(prepared.text) == MAX_CHARS and prepared.cut_from == MAX_CHARS + 10
    assert prepare("bread").cut_from is None


def test_path_and_points():
    assert nace_path(load_nomenclature(), "10.71").startswith("C ")
    assert nace_path(load_nomenclature(), "99.99") == "unknown code"
    assert points(-0.387) == "-38.7 points"


def test_the_prediction_set_sentence_names_its_codes_and_what_its_guarantee_covers():
    from nace_app.coding.predicting import set_sentence

    assert set_sentence(["10.71"], 0.9) == ("90% prediction set (for descriptions like our held-out texts written apart "
                                            "from the training data): `10.71` · one code")
    many = set_sentence([f"{i:02d}.11" for i in range(1, 12)], 0.95)
    assert many.startswith("95% prediction set (for descriptions like") and "`08.11` and 3 more · 11 codes" in many
    assert "safe" not in many and "automatic" not in many


def test_one_decision_from_the_chosen_rule_with_its_measured_accuracy_and_the_other_rule_labelled():
    from nace_app.coding.predicting import decision
    from nace_app.review.calibration import SET_RULE, THRESHOLD_RULE, RuleRecord

    by_threshold = RuleRecord("top-1 probability ≥ 0.50", 1180, 838, 737)
    by_set = RuleRecord("a 90% prediction set of one code", 1180, 400, 380)
    chosen = decision(PREDICTION, 3, THRESHOLD_RULE, TOP1_PROBABILITY, 0.5, by_threshold, by_set)
    assert chosen.automatic and chosen.sentence == (
        "Code automatically (top-1 probability 0.600 ≥ 0.50): the rule (top-1 probability ≥ 0.50) was right 88% of "
        "the time on 1,180 held-out shifted descriptions (it coded 71% of them).")
    assert chosen.alternative.startswith("Alternative rule: a 90% prediction set of one code would send it to manual "
                                         "review (its set holds 3 codes); it was right 95% of the time")
    by_set_rule = decision(PREDICTION, 3, SET_RULE, TOP1_PROBABILITY, 0.5, by_set, by_threshold)
    assert not by_set_rule.automatic and by_set_rule.sentence.startswith("Send to manual review (its set holds 3 codes)")
    assert by_set_rule.alternative.startswith("Alternative rule: top-1 probability ≥ 0.50 would code it automatically")
    assert "no prediction set" in decision(PREDICTION, None, SET_RULE, TOP1_PROBABILITY, 0.5, by_set, by_threshold).sentence


def test_every_example_pill_names_a_class_of_nace_rev_2_1():
    from nace_app.coding.predicting import EXAMPLES

    nomenclature = load_nomenclature()
    assert 6 <= len(EXAMPLES) <= 8
    for text, code in EXAMPLES.items():
        assert len(nomenclature.path(code)) == 4, f"{code} (for “{text}”) is not a Rev 2.1 class"


def test_the_embedded_model_codes_every_example_pill_right():
    from nace_app.coding.predicting import EXAMPLES
    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import load_model
    from nace_app.sources.resolve import embedded_model_dir

    classifier = Classifier(load_model(embedded_model_dir()))
    predictions = classifier.predict(list(EXAMPLES), top_k=1)
    wrong = [f"“{text}”: {prediction.candidates[0].code} first, a coder gives {code}"
             for (text, code), prediction in zip(EXAMPLES.items(), predictions, strict=True)
             if prediction.candidates[0].code != code]
    assert not wrong, "\n".join(wrong)
