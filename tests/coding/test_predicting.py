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


def test_the_prediction_set_sentence_names_its_codes_and_what_a_set_of_one_means():
    from nace_app.coding.predicting import set_sentence

    assert set_sentence(["10.71"], 0.9) == "With 90% coverage: `10.71` · a set of one code: safe to code automatically"
    many = set_sentence([f"{i:02d}.11" for i in range(1, 12)], 0.95)
    assert many.startswith("With 95% coverage: `01.11`, `02.11`") and "`08.11` and 3 more · 11 codes" in many


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
