"""Every page through Streamlit's AppTest, on the embedded demo model and data; widgets are found by key."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from nace_app.app.state import widget_key
from nace_app.model.opening import open_workspace
from nace_app.review.neighbours import NeighbourIndex
from nace_app.settings.config import load_settings
from tests.conftest import REPO

APP = str(REPO / "app.py")
CROISSANTS = "I sell croissants and pains au chocolat in my bakery"


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")


@pytest.fixture
def app(embedded) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


@contextlib.contextmanager
def fresh_app():
    """A first session on a new server: the shared caches emptied before and after."""
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        assert not at.exception, at.exception
        yield at
    finally:
        st.cache_resource.clear()


def code(at: AppTest, text: str) -> AppTest:
    at.text_area(key=widget_key("description")).input(text)
    next(b for b in at.button if b.label == "Code it").click().run()
    assert not at.exception, at.exception
    return at


def candidate_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value[:2] == "**" and "`" in m.value[:8]]


def highlights(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.html if "nace-highlight" in h.proto.body]


def show_view(at: AppTest, view: str) -> AppTest:
    at.segmented_control[0].set_value(view).run()
    assert not at.exception, at.exception
    return at


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


# --- Predict ----------------------------------------------------------------------------------------------------

OPEN_WITHOUT_TORCH = """
import sys
from streamlit.testing.v1 import AppTest
from nace_app.app.state import widget_key
at = AppTest.from_file(sys.argv[1], default_timeout=300)
at.run()
assert not at.exception, at.exception
at.text_area(key=widget_key("description")).input("I sell croissants and bread in my bakery")
next(b for b in at.button if b.label == "Code it").click().run()
assert not at.exception, at.exception
assert any('class="nace-word"' in h.proto.body for h in at.get("html")), "no highlights"
for view in ("occlusion", "words", "contrast"):
    at.segmented_control[0].set_value(view).run()
    assert not at.exception, at.exception
    assert at.segmented_control[0].value == view
print("heavy modules:", sorted(m for m in ("torch", "torchTextClassifiers", "transformers") if m in sys.modules))
"""


def test_the_app_codes_and_explains_with_the_embedded_model_without_importing_torch(tmp_path):
    """A mean-pooling model predicts and explains (integrated gradients, leave-one-out, the character view,
    contrasts) with numpy only: torch (seconds, most of a gigabyte) waits for training or other architectures."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", OPEN_WITHOUT_TORCH, APP], capture_output=True, text=True, cwd=tmp_path,
                            env={"NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded", "PATH": "/usr/bin:/bin",
                                 "NACE_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path), "NACE_WARM_UP": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heavy modules: []" in result.stdout


def test_before_input_the_page_shows_a_hint_and_examples(app):
    assert any("Type a description" in i.value for i in app.info)
    assert CROISSANTS in app.pills[0].options
    assert candidate_lines(app) == []


def test_coding_a_description_shows_candidates_paths_and_highlights(app):
    code(app, CROISSANTS)
    lines = candidate_lines(app)
    assert len(lines) == 5 and lines[0].startswith("**1. `10.71`**")
    assert any("C MANUFACTURING" in c.value for c in app.caption)
    assert highlights(app) and 'class="nace-word"' in highlights(app)[0] and "croissants" in highlights(app)[0]
    assert app.query_params["text"] == CROISSANTS
    assert app.query_params["k"] == "5" and app.query_params["code"] == "10.71"


def test_the_verdict_names_the_score_and_the_threshold_of_the_sidebar(app):
    app.radio(key=widget_key("automation_score")).set_value("confidence index").run()
    app.slider(key=widget_key("automation_threshold")).set_value(0.3).run()
    code(app, CROISSANTS)
    verdicts = [m.value for m in [*app.success, *app.warning] if "the rule (confidence index ≥ 0.30)" in m.value]
    assert len(verdicts) == 1 and "held-out shifted descriptions" in verdicts[0]


def test_one_verdict_from_the_chosen_rule_with_its_measured_accuracy_and_the_alternative_labelled(app):
    from nace_app.review.calibration import REPORT_PART, shifted_text

    report_rows = f"{shifted_text(REPORT_PART).height:,}"
    code(app, CROISSANTS)
    for rule in ("score ≥ threshold", "a prediction set of one code"):
        app.radio(key=widget_key("automatic_coding_rule")).set_value(rule).run()
        verdicts = [m.value for m in [*app.success, *app.warning] if m.value.startswith(("Code automatically",
                                                                                          "Send to manual review"))]
        assert len(verdicts) == 1 and re.search(rf"was right \d+% of the time on {report_rows} held-out shifted "
                                                 "descriptions", verdicts[0])
        alternatives = [c.value for c in app.caption if c.value.startswith("Alternative rule: ")]
        assert len(alternatives) == 1 and "held-out shifted descriptions" in alternatives[0]
        shown = " ".join(m.value for m in [*app.markdown, *app.success, *app.warning, *app.caption])
        assert "safe to code" not in shown


def test_a_model_with_calibration_json_shows_its_tempered_probabilities(embedded, monkeypatch, tmp_path):
    import shutil

    from nace_app.model.classifier import Classifier, tempered_softmax
    from nace_app.model.formats import load_model

    folder = shutil.copytree(REPO / "nace_app/resources/embedded_model", tmp_path / "calibrated")
    (folder / "calibration.json").write_text(json.dumps({"temperature": 2.0, "rows": 200, "fitted_on": "a test",
                                                         "scores": np.linspace(0, 0.9, 200).round(6).tolist()}))
    monkeypatch.setenv("NACE_MODEL_URI", str(folder))
    with fresh_app() as at:
        code(at, CROISSANTS)
        classifier = Classifier(load_model(folder))
        expected = tempered_softmax(classifier.logits([CROISSANTS]), 2.0)[0]
        best = np.sort(expected)[::-1][:5]
        bars = [bar.proto.text for bar in at.get("progress")]
        assert [float(text.rstrip("%")) for text in bars] == pytest.approx([round(p * 100, 1) for p in best])
        sets = [m.value for m in at.markdown if m.value.startswith("90% prediction set (for descriptions like our "
                                                                       "held-out texts written apart from the training data)")]
        assert len(sets) == 1


def test_an_example_codes_the_example(app):
    app.pills[0].set_value(predicting_example(1)).run()
    assert app.text_area(key=widget_key("description")).value == predicting_example(1)
    assert len(candidate_lines(app)) == 5


def test_clicking_the_highlighted_example_again_after_other_text_codes_it_again(app):
    example = predicting_example(0)
    app.pills[0].set_value(example).run()
    assert app.text_area(key=widget_key("description")).value == example
    assert app.pills[0].value is None  # the pill lets go: it does not stay highlighted for a text that is no longer it
    code(app, "taxi driver")
    app.pills[0].set_value(example).run()
    assert app.text_area(key=widget_key("description")).value == example
    assert any(c.value.startswith(f"Codes for: “{example[:40]}") for c in app.caption)


def predicting_example(index: int) -> str:
    from nace_app.coding.predicting import EXAMPLES

    return list(EXAMPLES)[index]


def test_top_k_and_candidate_switch_do_not_recompute_predictions(app, monkeypatch):
    code(app, "I repair cars and carry out technical inspections")
    from nace_app.model.classifier import Classifier

    calls = []
    original = Classifier.predict
    monkeypatch.setattr(Classifier, "predict", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    app.slider(key=widget_key("top_k")).set_value(3).run()
    assert len(candidate_lines(app)) == 3
    second = app.radio(key="selected_code").options[1]
    app.radio(key="selected_code").set_value(second).run()
    assert any(second in c.value for c in app.caption if "Integrated gradients" in c.value)
    assert app.query_params["code"] == second and app.query_params["k"] == "3"
    assert calls == []


def test_contrastive_view_compares_two_candidates(app):
    code(app, "I repair cars and carry out technical inspections")
    show_view(app, "contrast")
    rival = app.selectbox(key="rival_code").options[-1].split(" · ")[0]  # AppTest lists the formatted labels
    app.selectbox(key="rival_code").set_value(rival).run()
    assert [h for h in highlights(app) if f" over {rival}" in h]
    assert not [h for h in highlights(app) if " over " not in h]
    assert app.query_params["rival"] == rival and app.query_params["view"] == "contrast"


def test_word_chart_is_labelled_with_the_words_typed(app):
    code(app, "I sell croissants and pains au chocolat")
    show_view(app, "words")
    words_chart = next(s for s in chart_specs(app) if "Word attributions" in json.dumps(s["layout"]["title"]))
    assert words_chart["layout"]["xaxis"]["ticktext"] == "I sell croissants and pains au chocolat".split()


def test_leave_one_word_out_draws_one_bar_per_word(app):
    code(app, CROISSANTS)
    show_view(app, "occlusion")
    chart = next(s for s in chart_specs(app) if "when the word is removed" in json.dumps(s["layout"]["title"]))
    assert chart["layout"]["xaxis"]["ticktext"] == CROISSANTS.split()


def first_text_with_disagreements(texts: list[str]) -> tuple[str, list[str]]:
    """The first text on which the embedded model's explanations of its best code disagree, and the flagged words."""
    from nace_app.explain.agreement import sign_disagreements
    from nace_app.explain.attributions import integrated_gradients, occlusion
    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import load_model
    from nace_app.sources.resolve import embedded_model_dir

    classifier = Classifier(load_model(embedded_model_dir()))
    for text in texts:
        best = classifier.predict([text], top_k=1)[0].candidates[0].code
        words = integrated_gradients(classifier, text, [best])[0].words
        flags = sign_disagreements(words, occlusion(classifier, text, words, [best])[best])
        if flags:
            return text, [f.word for f in flags]
    raise AssertionError("the two methods agree on every example: pick texts where they do not")


DISAGREEMENT = "Integrated gradients and leave-one-out disagree on: "


def test_words_the_two_methods_disagree_on_are_flagged_in_both_word_views(app):
    from nace_app.coding.predicting import EXAMPLES

    text, flagged = first_text_with_disagreements(list(EXAMPLES))
    code(app, text)
    assert any("integrated gradients on the code's logit" in c.value and "change in its probability" in c.value
               for c in app.caption)
    line = next(line for line in map(as_read, (c.value for c in app.caption)) if DISAGREEMENT in line)
    assert all(f"{word} (" in line for word in flagged) and "points without it)" in line
    assert highlights(app)[0].count('class="nace-flag"') == len(flagged)
    show_view(app, "occlusion")
    assert any(DISAGREEMENT in as_read(c.value) for c in app.caption)
    chart = next(s for s in chart_specs(app) if "when the word is removed" in json.dumps(s["layout"]["title"]))
    assert chart["data"][0]["text"].count("≠") == len(flagged)


def test_the_faithfulness_check_shows_the_expected_drop_as_good_news_not_in_red(app):
    from streamlit.proto.Metric_pb2 import Metric

    code(app, CROISSANTS)
    check = next(m for m in app.metric if m.label.startswith("P(10.71) without"))
    assert check.proto.delta.startswith("-")  # removing the most influential word lowers the probability: it passes
    assert check.proto.color == Metric.MetricColor.GREEN
    assert not app.error


def test_shared_link_reproduces_the_view_and_ignores_bad_values(embedded):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"text": "I develop business management software for companies", "k": "3",
                            "code": "not-a-code<script>", "view": "contrast"})
    at.run()
    assert len(candidate_lines(at)) == 3
    assert at.radio(key="selected_code").value == at.radio(key="selected_code").options[0]
    assert at.segmented_control[0].value == "contrast"


def test_a_link_to_a_model_this_server_lacks_says_so(embedded):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"text": "bakery", "model": "trained:nonexistent-run"})
    at.run()
    assert any("does not have" in i.value for i in at.info)
    assert len(candidate_lines(at)) == 5


@pytest.mark.parametrize("text", ["", "    \n  "])
def test_empty_text_gives_a_hint_not_an_error(app, text):
    code(app, text)
    assert any("Type a description" in i.value for i in app.info) and not app.error


def test_long_text_is_truncated_with_a_notice(app):
    code(app, "bakery " * 400)
    assert any("only the first 2,000" in w.value for w in app.warning)
    assert len(candidate_lines(app)) == 5


def test_a_long_description_is_read_to_its_end_by_the_embedded_model(app):
    text = ("Founded in 1987 in the historic centre of Lyon, our family business with four employees and two shops "
            "is a traditional artisan bakery")
    code(app, text)
    assert not [i for i in app.info if "fixed window" in i.value]
    assert "nace-unread" not in highlights(app)[0] and ">bakery<sup" in highlights(app)[0]


@pytest.mark.parametrize("text", ["🍞🥐🍰 😀", "日本のパン屋さん", "!!! ??? ...", "\x00\x07\x1b bakery\x7f"])
def test_unusual_input_still_predicts(app, text):
    code(app, text)
    assert len(candidate_lines(app)) == 5
    if text[0] in "🍞日":
        assert any("unknown to the model" in w.value for w in app.warning)


def test_markup_typed_by_the_user_is_shown_as_text(app):
    code(app, '<script>alert("x")</script> <img src=x onerror=alert(1)> bakery')
    bodies = [h.proto.body for h in app.html if "bakery" in h.proto.body]  # the ones showing the user's text
    assert bodies and all("<script>" not in b and "<img" not in b for b in bodies)
    assert any("&lt;" in b and "&gt;" in b and "&quot;" in b for b in bodies)


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    at.file_uploader(key="batch_file").set_value((name, content, "text/csv")).run()
    assert not at.exception, at.exception
    return at


def test_batch_output_keeps_every_row_its_columns_and_its_text(app):
    content = "id;description\n1;boulangerie pâtisserie\n2;\n3;taxi driver\n".encode("latin-1")
    upload(app, "firms.csv", content)
    assert app.selectbox(key="batch_column").value == "description"
    next(b for b in app.button if b.label == "Code the file").click().run()
    frame = app.dataframe[-1].value
    assert list(frame["id"]) == ["1", "2", "3"] and list(frame["description"])[0] == "boulangerie pâtisserie"
    assert {"code_1", "heading_1", "probability_1", "code_5", "verdict"} <= set(frame.columns)
    assert frame["code_1"][1] == "" and frame["verdict"][1] == "not coded (empty)"  # empty, not the word None
    assert [b.label for b in app.get("download_button")] == ["Excel (.xlsx)", "CSV", "Parquet"]


def test_an_upload_over_the_row_cap_is_refused_in_one_line_pointing_to_the_command_line(app):
    from nace_app.coding import batch

    upload(app, "many.txt", b"a\n" * (batch.MAX_PAGE_ROWS + 1))
    assert len(app.error) == 1 and f"at most {batch.MAX_PAGE_ROWS:,} per file" in as_read(app.error[0].value)
    assert "nace-app predict" in as_read(app.error[0].value) and not [b for b in app.button if b.label == "Code the file"]


def test_a_batch_is_coded_a_chunk_at_a_time_to_disk_and_previewed_from_its_head(app, monkeypatch):
    import pyarrow.parquet as pq

    from nace_app.coding import batch

    monkeypatch.setattr(batch, "PAGE_CHUNK_ROWS", 2)
    texts = ["bakery", "taxi driver", "", "florist", "car repair"]
    upload(app, "firms.txt", "\n".join(texts).encode())
    next(b for b in app.button if b.label == "Code the file").click().run()
    assert not app.exception, app.exception
    coded = app.session_state["batch_result"][1]
    assert coded.path.parent.name == "batches" and pq.ParquetFile(coded.path).num_row_groups == 3
    assert list(app.dataframe[-1].value["text"]) == texts
    assert pl.read_parquet(coded.path)["verdict"][2] == batch.NOT_CODED


def test_a_table_wider_than_a_worksheet_is_coded_and_says_why_excel_is_not_offered(app):
    header = ",".join(["label", *(f"c{i}" for i in range(16_400))])
    upload(app, "wide.csv", f"{header}\nbakery{',1' * 16_400}\n".encode())
    next(b for b in app.button if b.label == "Code the file").click().run()
    assert not app.exception, app.exception
    assert [b.label for b in app.get("download_button")] == ["CSV", "Parquet"]
    assert any("a worksheet holds 16,384" in c.value for c in app.caption)


def test_a_column_of_numbers_cannot_be_coded_as_descriptions(app):
    upload(app, "firms.csv", b"id,activity\n1,bakery\n2,taxi driver\n")
    app.selectbox(key="batch_column").set_value("id").run()
    assert any("holds only numbers" in w.value for w in app.warning)
    assert next(b for b in app.button if b.label == "Code the file").disabled


def test_a_utf16_csv_from_excel_is_coded(app):
    upload(app, "firms.csv", "label\tn\nboulangerie pâtisserie\t1\n".encode("utf-16"))
    assert app.selectbox(key="batch_column").value == "label" and not app.main.error


def test_changing_the_text_column_hides_the_old_codes(app):
    upload(app, "firms.csv", b"a,b\nbakery,taxi\nplumber,dentist\n")
    next(b for b in app.button if b.label == "Code the file").click().run()
    assert app.get("download_button")
    app.selectbox(key="batch_column").set_value("b").run()
    assert not app.get("download_button") and any("press **Code the file** again" in c.value for c in app.caption)


def as_read(markdown: str) -> str:
    """What a reader sees of escaped markdown: backslash escapes and zero-width spaces removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def upload_file(name: str, content: bytes):
    return lambda at: upload(at, name, content)


def type_run_id(run_id: str):
    def action(at: AppTest) -> None:
        at.selectbox(key=widget_key("model_uri")).set_value("runs:").run()
        at.text_input(key=widget_key("mlflow_run_id")).input(run_id).run()
    return action


def with_environment(name: str, value: str):
    def action(at: AppTest) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(name, value)
            st.cache_resource.clear()
            try:
                at.run()
            finally:
                st.cache_resource.clear()
    return action


BAD_PAGE_INPUT = [  # (what the user does, where the one message appears, what it says, markup that must not render)
    (upload_file("empty.csv", b""), "main", "empty", None),
    (upload_file("binary.txt", b"\x00\x01\x02PK\x03\x04"), "main", "binary", None),
    (upload_file("big.csv", b"x" * (20 * 1024 * 1024 + 1)), "main", "the limit is 20 MB", None),
    (upload_file("header.csv", b"a,b\n"), "main", "has a header but no rows", None),
    (upload_file("[x](http://evil.example) ![i](http://evil.example/i.png).txt", b"\n \n"), "main", "has no text",
     "](http"),
    (type_run_id("[click](http://evil.example)"), "sidebar", "an MLflow run id has only letters", "](http"),
    (type_run_id("![img](http://evil.example/i.png)"), "sidebar", "an MLflow run id has only letters", "!["),
    (type_run_id("0123abcd"), "sidebar", "unavailable", None),
    (with_environment("NACE_CONNECT_TIMEOUT", "soon"), "main", "NACE_CONNECT_TIMEOUT", None),
    (with_environment("NACE_MAX_TRAINING_RUNS", "-1"), "main", "NACE_MAX_TRAINING_RUNS", None),
]


PAGES = ("app_pages/predict.py", "app_pages/review.py", "app_pages/train.py")
BAD_INPUT_ON_EVERY_PAGE = [(page, *case) for case in BAD_PAGE_INPUT for page in PAGES
                           if case[1] == "sidebar" or "NACE_" in case[2] or page == PAGES[0]]  # uploads: Predict only


@pytest.mark.parametrize(("page", "action", "where", "says", "markup"), BAD_INPUT_ON_EVERY_PAGE)
@pytest.mark.usefixtures("local_mlflow")  # a run id is looked up in the local MLflow store
def test_bad_input_on_a_page_is_one_escaped_message(app, page, action, where, says, markup):
    app.switch_page(page).run()
    action(app)
    assert not app.exception, app.exception
    errors = [e.value for e in (app.sidebar.error if where == "sidebar" else app.main.error)]
    assert len(errors) == 1 and says in as_read(errors[0]), errors
    if markup is not None:
        assert markup not in errors[0] and "\\]\\(http" in errors[0]  # brackets escaped: shown, not rendered


def test_sidebar_names_the_sources_and_offers_the_model_picker(app):
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert "embedded" in captions and "651 classes" in captions
    picker = app.sidebar.selectbox(key=widget_key("model_uri"))
    assert picker.options[0].startswith("Default") and "MLflow run…" in picker.options


def test_fallback_banner_when_the_default_remote_is_unreachable():
    with fresh_app() as at:
        assert any("Offline demo" in w.value for w in at.sidebar.warning)
        assert any("model source" in c.value and "unavailable" in c.value for c in at.sidebar.caption)


# --- Review -------------------------------------------------------------------------------------------------------


@pytest.fixture
def review(app):
    app.switch_page("app_pages/review.py").run()
    assert not app.exception, app.exception
    return app


@pytest.fixture(scope="module")
def independent():
    """Figures computed here, without the page's code paths."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NACE_MODEL_URI", "embedded")
    mp.setenv("NACE_DATA_URI", "embedded")
    workspace = open_workspace(load_settings())
    mp.undo()
    test = workspace.data.splits.test
    classifier = workspace.classifier  # opened without the app's hook: a model without calibration.json stays at T = 1
    from nace_app.model.classifier import tempered_softmax
    from nace_app.review.calibration import CALIBRATE_PART, Calibration, fit_temperature, shifted_text
    from nace_app.review.conformal import true_indices

    if classifier.calibration is not None:  # the model's own calibration.json, which the app uses as it is
        calibration = Calibration.from_dict(classifier.calibration)
        temperature = calibration.temperature
    else:  # fitted here, as the app does on opening
        part = shifted_text(CALIBRATE_PART)
        truth = true_indices(classifier.labels, part["code"].to_list())
        temperature = fit_temperature(classifier.logits(part["label"].to_list()), truth)
        calibration = Calibration(temperature, np.zeros(0), int((truth >= 0).sum()), "")
    probabilities = tempered_softmax(classifier.logits(test["label"].to_list()), temperature)
    labels = np.array(classifier.labels)
    predicted = labels[probabilities.argmax(1)]
    truth = np.array(test["code"].to_list())
    return {"test": test, "probabilities": probabilities, "predicted": predicted, "truth": truth, "labels": labels,
            "workspace": workspace, "temperature": temperature, "calibration_rows": calibration.rows}


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_headline_figures_match_an_independent_computation(review, independent):
    truth, predicted, probabilities = independent["truth"], independent["predicted"], independent["probabilities"]
    assert metric(review, "Test rows") == f"{len(truth):,}"
    assert metric(review, "Top-1 accuracy") == f"{np.mean(truth == predicted):.1%}"
    top5 = independent["labels"][np.argsort(-probabilities, axis=1)[:, :5]]
    assert metric(review, "Top-5 accuracy") == f"{np.mean((top5 == truth[:, None]).any(1)):.1%}"
    division = np.mean([t[:2] == p[:2] for t, p in zip(truth, predicted, strict=True)])
    assert metric(review, "Division") == f"{division:.1%}"
    assert metric(review, "Classes in test") == f"{len(set(truth)):,}"


def test_the_sidebar_rule_moves_the_automation_figures(app, independent):
    confidence = independent["probabilities"].max(1)
    app.slider(key=widget_key("automation_threshold")).set_value(0.8).run()
    app.switch_page("app_pages/review.py").run()
    assert not app.exception
    assert metric(app, "Coded automatically") == f"{np.mean(confidence >= 0.8):.1%}"
    correct = independent["truth"] == independent["predicted"]
    assert metric(app, "Confident errors let through") == f"{int(((confidence >= 0.8) & ~correct).sum()):,}"
    app.radio(key=widget_key("automation_score")).set_value("confidence index").run()
    top2 = -np.sort(-independent["probabilities"], axis=1)[:, :2]
    assert metric(app, "Coded automatically") == f"{np.mean(top2[:, 0] - top2[:, 1] >= 0.8):.1%}"


def open_tab(at: AppTest, name: str) -> None:
    at.session_state["review_view"] = name  # as a click on the tab does
    at.run()
    assert not at.exception, at.exception


def rows_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if " rows · page " in c.value)


def test_filters_narrow_the_error_browser(review, independent):
    open_tab(review, "Errors")
    truth, predicted, probabilities = independent["truth"], independent["predicted"], independent["probabilities"]
    wrong = truth != predicted
    assert rows_caption(review).startswith(f"{wrong.sum():,} rows")
    review.text_input(key=widget_key("filter_true")).input("47").run()
    in_47 = np.char.startswith(truth.astype(str), "47")
    assert rows_caption(review).startswith(f"{int((wrong & in_47).sum()):,} rows")
    review.slider(key=widget_key("filter_probability")).set_value((0.2, 1.0)).run()
    expected = int((wrong & in_47 & (probabilities.max(1) >= 0.2)).sum())
    assert expected > 0 and rows_caption(review).startswith(f"{expected:,} rows")


def test_exported_error_rows_open_in_a_spreadsheet_with_codes_as_text(review, monkeypatch):
    import zipfile

    offered = {}
    download_button = st.download_button

    def recording(label, data, *args, **kwargs):
        offered[label] = data
        return download_button(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", recording)
    open_tab(review, "Errors")
    raw = offered["CSV"]
    assert raw.startswith(b"\xef\xbb\xbf")
    back = pl.read_csv(io.BytesIO(raw[3:]), infer_schema=False)
    first = raw.decode("utf-8-sig").splitlines()[1]
    assert f'"{back["true_code"][0]}"' in first and f'"{back["predicted_code"][0]}"' in first  # codes quoted
    assert all(len(p.split(".")[-1]) <= 4 for p in back["probability"].to_list())
    assert len(back["top5"][0].split(" ")) == 5
    workbook = zipfile.ZipFile(io.BytesIO(offered["Excel (.xlsx)"]))
    assert back["true_code"][0] in workbook.read("xl/sharedStrings.xml").decode()  # a text cell, not a number


def explain_row_box(at: AppTest):
    return at.selectbox(key=widget_key("review_row"))


def test_a_chosen_row_shows_its_candidates_and_three_explanations(review, independent):
    open_tab(review, "Errors")
    row_id = int(explain_row_box(review).options[1].split(" ")[0].lstrip("#"))
    explain_row_box(review).set_value(row_id).run()
    assert not review.exception
    assert len(highlights(review)) == 3  # predicted, true, and "predicted rather than true"
    candidates = next(d.value for d in review.dataframe if "rank" in d.value.columns)
    assert independent["truth"][row_id] in list(candidates["code"])  # listed even outside the top 5
    review.text_input(key=widget_key("filter_search")).input("zzz-no-such-text").run()
    review.text_input(key=widget_key("filter_search")).input("").run()
    assert explain_row_box(review).value == row_id  # the choice is a row identity: filter changes keep it


def test_per_class_search_finds_classes_by_description_words(review):
    open_tab(review, "Per class")
    review.text_input(key=widget_key("class_search")).input("bakery").run()
    table = next(d.value for d in review.dataframe if "support" in d.value.columns)
    assert "10.71" in list(table["code"])


def test_confusions_default_to_the_largest_off_diagonal_cell(review, independent):
    open_tab(review, "Confusions")
    from collections import Counter

    sections = [(t, p) for t, p in zip(independent["truth"], independent["predicted"], strict=True)]
    from nace_app.nomenclature.structure import load_nomenclature

    nomenclature = load_nomenclature()
    pairs = Counter((nomenclature.section_of(t), nomenclature.section_of(p)) for t, p in sections
                    if nomenclature.section_of(t) != nomenclature.section_of(p))
    (true, predicted), count = pairs.most_common(1)[0]
    assert any(f"**{count:,} test rows** true `{true}` → predicted `{predicted}`" in m.value for m in review.markdown)


def test_calibration_tab_draws_the_reliability_diagram_and_the_threshold(review):
    open_tab(review, "Calibration")
    specs = chart_specs(review)
    titles = json.dumps([s["layout"].get("title") for s in specs])
    assert "Reliability diagram" in titles and "correct and incorrect" in titles
    histogram = next(s for s in specs if "correct and incorrect" in json.dumps(s["layout"].get("title")))
    assert histogram["layout"]["barmode"] == "group" and histogram["layout"]["shapes"][0]["x0"] == 0.5


@contextlib.contextmanager
def review_of(frame: pl.DataFrame, monkeypatch, folder):
    """The Review page of a new server whose data is `frame`."""
    path = folder / "data.parquet"
    frame.write_parquet(path)
    monkeypatch.setenv("NACE_DATA_URI", str(path))
    with fresh_app() as at:
        at.switch_page("app_pages/review.py").run()
        assert not at.exception, at.exception
        yield at


def test_review_warns_about_codes_the_model_does_not_know(embedded, monkeypatch, tmp_path, demo_frame):
    odd = demo_frame.with_columns(pl.when(pl.col("code") == "10.71").then(pl.lit("10.79")).otherwise(pl.col("code"))
                                  .alias("code"))
    with review_of(odd, monkeypatch, tmp_path) as at:
        assert any("codes the model does not know" in w.value and "10.79" in w.value for w in at.warning)


# --- Train --------------------------------------------------------------------------------------------------------


def estimated_duration(at: AppTest) -> str:
    return next(c.value for c in at.caption if "Estimated duration" in c.value)


@pytest.mark.usefixtures("local_mlflow")
def test_training_run_from_the_page_is_usable_at_once_and_stays_listed(app):
    app.switch_page("app_pages/train.py").run()
    assert "not measured on this server yet" in estimated_duration(app)
    app.number_input(key=widget_key("train_sample")).set_value(700).run()
    app.slider(key=widget_key("train_epochs")).set_value(1).run()
    next(b for b in app.button if b.label == "Start training").click().run()
    job = app.session_state["training_job_id"]
    from nace_app.app.caches import job_registry

    running = job_registry().get(job)
    assert next(b for b in app.button if b.label == "Start training").disabled or running.state == "done"
    running.join(timeout=300)
    app.run()
    assert not app.exception, app.exception
    assert running.state == "done", running.error
    assert any("validation loss" in chart.proto.spec for chart in app.get("plotly_chart"))
    measured = estimated_duration(app)  # the run just measured this server's speed
    assert "from this server's recent runs of this kind" in measured
    app.number_input(key=widget_key("train_sample")).set_value(40_000).run()  # about 30 times the rows
    assert estimated_duration(app) != measured
    use = next(b for b in app.button if b.label.startswith("Use this model"))
    use.click().run()
    assert app.session_state["model_uri"] == str(running.result.model_dir)
    app.switch_page("app_pages/predict.py").run()
    assert str(running.result.model_dir) in " ".join(c.value for c in app.sidebar.caption)
    code(app, "bakery")
    assert len(candidate_lines(app)) == 5
    fresh = AppTest.from_file(APP, default_timeout=180)  # a reload: a new session on the same server
    fresh.run()
    assert any(running.job_id in label for label in fresh.sidebar.selectbox(key=widget_key("model_uri")).options)
    linked = AppTest.from_file(APP, default_timeout=180)  # a link made on the trained model opens on it
    linked.query_params.update({"text": "bakery", "model": f"trained:{running.job_id}"})
    linked.run()
    assert linked.session_state["model_uri"] == str(running.result.model_dir) and not linked.info


@pytest.mark.usefixtures("local_mlflow")
def test_a_reloaded_train_page_shows_the_running_jobs_settings_then_the_kept_epochs_probes(embedded):
    from nace_app.app.caches import job_registry
    from nace_app.training.runs import kept_epoch

    with fresh_app() as at:
        at.switch_page("app_pages/train.py").run()
        at.number_input(key=widget_key("train_sample")).set_value(700).run()
        at.slider(key=widget_key("train_epochs")).set_value(2).run()
        submit(at, "Start training")
        job = job_registry().get(at.session_state["training_job_id"])
        reloaded = AppTest.from_file(APP, default_timeout=180)  # a new session, as a reload of the page's link
        reloaded.query_params["job"] = job.job_id
        reloaded.switch_page("app_pages/train.py").run()
        assert not reloaded.exception, reloaded.exception
        assert reloaded.number_input(key=widget_key("train_sample")).value == 700
        assert reloaded.slider(key=widget_key("train_epochs")).value == 2
        job.join(timeout=300)
        reloaded.run()
        assert job.state == "done", job.error
        kept = kept_epoch(job.result.history)
        assert any(h.value == f"Probe descriptions with the kept model (epoch {kept})" for h in reloaded.subheader)
        assert any(f"The model kept is the one after epoch {kept} of" in c.value for c in reloaded.caption)


def test_the_pages_default_run_is_the_clis_default_run(app):
    import threading

    from nace_app.app.caches import job_registry, training_queue
    from nace_app.cli.main import TRAINING_FLAGS, build_parser
    from nace_app.training.core import TrainingSettings

    args = build_parser().parse_args(["train", "--data", "embedded"])
    cli = TrainingSettings(**{name: getattr(args, name) for name in TRAINING_FLAGS})
    queue = training_queue()
    busy = [f"busy-{slot}" for slot in range(queue.capacity)]  # the server is busy: the run waits, is never trained
    for slot in busy:
        assert queue.acquire(slot, threading.Event())
    try:
        app.switch_page("app_pages/train.py").run()
        next(b for b in app.button if b.label == "Start training").click().run()
        job = job_registry().get(app.session_state["training_job_id"])
        job.stop()
        job.join(timeout=30)
    finally:
        for slot in busy:
            queue.release(slot)
    assert job.state == "stopped" and job.training == cli == TrainingSettings()


@pytest.mark.usefixtures("local_mlflow")
def test_model_picker_loads_an_mlflow_run_and_reports_a_bad_id_once(embedded, tiny_frame, tmp_path):
    from nace_app.model.opening import DataSet
    from nace_app.sources.resolve import ResolvedSource
    from nace_app.training.core import TrainingSettings
    from nace_app.training.runs import run_logged_training

    data = DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)
    settings = TrainingSettings(sample_size=None, epochs=1, batch_size=16, embedding_dim=16, vocab_size=300)
    _, run = run_logged_training(data, settings, load_settings(), tmp_path / "work")
    with fresh_app() as at:
        at.selectbox(key=widget_key("model_uri")).set_value("runs:").run()
        at.text_input(key=widget_key("mlflow_run_id")).input(run.run_id).run()
        assert not at.exception
        assert f"runs:/{run.run_id}/model" in " ".join(c.value for c in at.caption)
        at.text_input(key=widget_key("mlflow_run_id")).input("no-such-run").run()
        errors = [e.value for e in at.sidebar.error]
        assert len(errors) == 1 and "unavailable" in errors[0]


def test_csv_download_opens_in_a_spreadsheet_with_its_separator_and_accents(app):
    from nace_app.coding import batch

    upload(app, "firms.csv", "id;description\n1;boulangerie pâtisserie\n".encode("latin-1"))
    next(b for b in app.button if b.label == "Code the file").click().run()
    coded = app.session_state["batch_result"][1]
    raw = coded.csv_bytes(";")
    assert raw == batch.to_csv_bytes(pl.read_parquet(coded.path), ";")  # built from disk, a row group at a time
    assert raw.startswith(b"\xef\xbb\xbf") and ";" in raw.decode("utf-8-sig").splitlines()[0]
    back = pl.read_csv(io.BytesIO(raw[3:]), separator=";", infer_schema=False)
    assert back["description"][0] == "boulangerie pâtisserie" and "." in back["code_1"][0]


# --- Prediction sets, similar examples, corrections ------------------------------------------------------------


def open_correction_form(at: AppTest) -> None:
    """Opens the Predict page's "Confirm or correct the code" expander, whose form is drawn only when open."""
    at.session_state["correction_open"] = True
    at.run()


def correction_box(at: AppTest):
    return next(s for s in at.selectbox if s.label.startswith("Right code"))


def submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def prediction_sets(independent):
    """Coverage on the test split and the sets of CROISSANTS, from the shifted text's calibrate part, computed
    without the pages' code (only the shared temperature fit)."""
    from nace_app.model.classifier import tempered_softmax
    from nace_app.review import conformal
    from nace_app.review.calibration import CALIBRATE_PART, fit_temperature, shifted_text

    classifier, splits = independent["workspace"].classifier, independent["workspace"].data.splits
    if classifier.calibration is not None:  # the model's own calibration.json: its temperature and stored scores
        temperature = classifier.calibration["temperature"]
        stored = np.asarray(classifier.calibration["scores"])
        calibrate = lambda level: conformal.from_scores(stored, level)  # noqa: E731
    else:
        part = shifted_text(CALIBRATE_PART)
        truth = conformal.true_indices(classifier.labels, part["code"].to_list())
        logits = classifier.logits(part["label"].to_list())
        temperature = fit_temperature(logits, truth)
        calibrate = lambda level: conformal.calibrate(tempered_softmax(logits, temperature), truth, level)  # noqa: E731
    test_truth = conformal.true_indices(classifier.labels, splits.test["code"].to_list())
    test = tempered_softmax(classifier.logits(splits.test["label"].to_list()), temperature)
    figures = {}
    for level in (0.90, 0.99):
        calibrator = calibrate(level)
        croissants = calibrator.sets(tempered_softmax(classifier.logits([CROISSANTS]), temperature))[0]
        figures[level] = (float(calibrator.contains(test, test_truth).mean()), [classifier.labels[i] for i in croissants])
    return figures


def test_the_prediction_set_follows_the_sidebar_coverage_and_names_what_its_guarantee_covers(app, prediction_sets):
    code(app, CROISSANTS)
    for level in (90, 99):
        app.slider(key=widget_key("coverage_level")).set_value(level).run()
        _, expected = prediction_sets[level / 100]
        line = next(m.value for m in app.markdown if m.value.startswith(
            f"{level}% prediction set (for descriptions like our held-out texts written apart from the training data):"))
        assert all(f"`{code}`" in line for code in expected[:8])
        assert line.endswith("· one code") if len(expected) == 1 else line.endswith(f"· {len(expected)} codes")


def test_review_reports_coverage_on_the_test_split_and_the_shifted_text_side_by_side(review, prediction_sets,
                                                                                     independent):
    open_tab(review, "Prediction sets")
    coverage, _ = prediction_sets[0.90]
    assert metric(review, "Coverage asked for") == "90%"
    assert metric(review, "Coverage on the test rows") == f"{coverage:.1%}"
    rows = f"{independent['calibration_rows']:,}".replace(",", "\\,")  # its fitted_on escaped as literal text
    assert any(c.value.startswith(f"Calibrated on {rows} ") and "temperature" in c.value for c in review.caption)
    side_by_side = next(d.value for d in review.dataframe if "measure" in d.value.columns)
    assert list(side_by_side.columns) == ["measure", "test split", "shifted text (report part)"]
    assert {"coverage reached", "mean set size", "sets of one code", "accuracy of the sets of one",
            "top-1 ECE before temperature", "top-1 ECE after temperature"} <= set(side_by_side["measure"])
    assert side_by_side.set_index("measure").loc["coverage reached", "test split"] == f"{coverage:.1%}"
    by_section = next(d.value for d in review.dataframe if "singleton_share" in d.value.columns)
    assert set(by_section["group"]) <= set("ABCDEFGHIJKLMNOPQRSTUV")
    titles = json.dumps([s["layout"].get("title") for s in chart_specs(review)])
    assert "Prediction-set sizes at 90% coverage" in titles


def test_similar_examples_are_the_nearest_training_rows(app):
    from nace_app.app import caches

    code(app, CROISSANTS)
    shown = next(d.value for d in app.dataframe if "similarity" in d.value.columns)
    workspace = caches.default_workspace()  # the server's own model and data
    index = NeighbourIndex.build(workspace.classifier, workspace.data.splits.train, workspace.settings.cache_dir)
    assert list(shown["description"]) == [n.text for n in index.nearest(CROISSANTS, 5)]
    assert list(shown["code"])[0] == "10.71"


def test_while_the_warm_up_embeds_the_training_rows_a_click_shows_everything_else_and_the_examples_follow(app):
    from nace_app.app import caches

    workspace = caches.default_workspace()
    key = f"{workspace.classifier.fingerprint}-{workspace.data.fingerprint}"
    caches._warmed.add(key)  # a warm-up that has not embedded the training rows yet (the warm-up is off in tests)
    try:
        code(app, CROISSANTS)
        assert candidate_lines(app) and highlights(app)
        assert not any("similarity" in d.value.columns for d in app.dataframe)
        assert any(c.value.startswith("Embedding the training rows for similar examples") for c in app.caption)
        caches._embedded.add(key)  # done: the fragment's next poll reruns the page, which shows the table
        app.run()
        assert any("similarity" in d.value.columns for d in app.dataframe)
    finally:
        caches._warmed.discard(key)
        caches._embedded.discard(key)


def test_a_correction_on_the_predict_page_is_listed_downloaded_and_undone(embedded):
    from nace_app.review.corrections import CorrectionStore

    with fresh_app() as at:
        code(at, CROISSANTS)
        assert not any(s.label.startswith("Right code") for s in at.selectbox)  # drawn once its expander is opened
        open_correction_form(at)
        correction_box(at).set_value("47.24")
        at.text_input(key=next(t.key for t in at.text_input if t.label == "Comment (optional)")).input("a shop")
        submit(at, "Save the right code")
        assert any("10.71 corrected to 47.24" in s.value for s in at.success)
        store = CorrectionStore(load_settings().cache_dir)
        (saved,) = store.list()
        assert (saved.text, saved.proposed_code, saved.corrected_code, saved.comment) == (CROISSANTS, "10.71", "47.24",
                                                                                         "a shop")
        at.switch_page("app_pages/review.py").run()
        open_tab(at, "Corrections")
        listed = next(d.value for d in at.dataframe if "corrected_code" in d.value.columns)
        assert list(listed["corrected_code"]) == ["47.24"]
        download = next(b for b in at.get("download_button") if "corrections" in b.proto.label)
        assert download.proto.label == "Download all corrections (CSV)"
        at.text_input(key=widget_key("corrections_search")).input("no such words").run()
        assert any("No corrections match" in i.value for i in at.info)
        at.text_input(key=widget_key("corrections_search")).input("").run()
        assert "T" not in str(next(d.value for d in at.dataframe if "created_at" in d.value.columns)["created_at"][0])
        submit(at, "Undo this correction")
        assert any("Undo correction #1 (10.71 → 47.24" in w.value for w in at.warning) and len(store.list()) == 1
        submit(at, "Keep it")
        assert len(store.list()) == 1 and not any("Undo correction" in w.value for w in at.warning)
        submit(at, "Undo this correction")
        submit(at, "Yes, undo it")
        assert store.list() == [] and any("No corrections yet" in i.value for i in at.info)


def test_a_damaged_corrections_database_breaks_no_page_and_is_reported_once_moved_aside(embedded):
    folder = load_settings().cache_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrections.sqlite3").write_bytes(b"not a database" * 1000)
    with fresh_app() as at:
        code(at, CROISSANTS)
        open_correction_form(at)
        submit(at, "Confirm 10.71")
        assert any("confirmed 10.71" in s.value for s in at.success)
        at.switch_page("app_pages/review.py").run()
        open_tab(at, "Corrections")
        assert not at.exception and any("moved aside" in w.value for w in at.warning)
        listed = next(d.value for d in at.dataframe if "corrected_code" in d.value.columns)
        assert list(listed["corrected_code"]) == ["10.71"]
        at.switch_page("app_pages/train.py").run()
        assert not at.exception and not [e for e in at.error if "database" in e.value]


def test_a_cache_folder_that_cannot_be_written_leaves_predict_and_review_working_with_a_notice(embedded):
    folder = load_settings().cache_dir
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("predictions", "neighbours"):  # taken by files: nothing can be stored under them, as on a full disk
        (folder / kind).write_text("not a folder")
    st.cache_data.clear()  # earlier tests' similar examples and sets of the same text would skip the cache folder
    with fresh_app() as at:
        code(at, CROISSANTS)
        assert any("similarity" in d.value.columns for d in at.dataframe)
        at.run()  # the sidebar is drawn before the page: the notice shows from the next run on
        assert any("cache folder cannot be written" in as_read(w.value) for w in at.sidebar.warning)
        at.switch_page("app_pages/review.py").run()
        assert not at.exception, at.exception
        assert any("cache folder cannot be written" in as_read(w.value) for w in at.sidebar.warning)


def test_an_error_is_confirmed_from_the_error_browser_with_its_predicted_code(review):
    from nace_app.app import caches

    open_tab(review, "Errors")
    row = review.session_state["review_row"]
    assert any("similarity" in d.value.columns for d in review.dataframe)
    predicted = next(m.value for m in review.markdown if m.value.startswith(f"**Row #{row}**")).split("predicted `")[1][:5]
    submit(review, f"Confirm {predicted}")
    newest = caches.correction_store().list()[0]
    assert newest.is_confirmation and newest.corrected_code == predicted
    assert newest.text == next(t.value for t in review.text if t.value)  # the row's description, as shown


def test_per_class_words_are_computed_once_then_shown_for_the_clicked_class(embedded, monkeypatch, tmp_path,
                                                                           demo_frame):
    small = demo_frame.filter(pl.col("code").is_in(["10.71", "47.24", "49.32", "56.11"]))
    with review_of(small, monkeypatch, tmp_path) as at:
        open_tab(at, "Per class")
        submit(at, "Compute the words of every class")
        at.session_state["words_class"] = "10.71"  # as a click on its row does
        at.run()
        assert any(m.value.startswith("**Words of `10.71`**") for m in at.markdown)
        toward = next(d.value for d in at.dataframe if list(d.value.columns)[:2] == ["rank", "word"])
        assert len(toward) > 0 and (toward["mean_score"] > 0).all()


@pytest.mark.usefixtures("local_mlflow")
def test_training_with_the_corrections_compares_both_models_without_the_corrected_test_rows(embedded):
    from nace_app.app.caches import job_registry
    from nace_app.review.corrections import CorrectionStore

    with fresh_app() as at:
        test = open_workspace(load_settings()).data.splits.test
        corrected = test["label"][0]
        CorrectionStore(load_settings().cache_dir).add(corrected, "99.00", test["code"][0], "embedded", "f")
        at.switch_page("app_pages/train.py").run()
        at.toggle(key=widget_key("train_with_corrections")).set_value(True).run()
        at.number_input(key=widget_key("train_sample")).set_value(700).run()
        at.slider(key=widget_key("train_epochs")).set_value(1).run()
        submit(at, "Start training")
        job = job_registry().get(at.session_state["training_job_id"])
        assert job.extra_rows is not None and job.extra_rows["label"].to_list() == [corrected]
        job.join(timeout=300)
        at.run()
        assert job.state == "done", job.error
        assert job.result.test.n == test.height  # the run's own figures still cover the whole split
        assert any("1 corrected description is in the test split" in c.value for c in at.caption)
        tables = [d.value for d in at.dataframe if "model / split" in d.value.columns]
        table = next(t for t in tables if "default model · the corrections" in list(t["model / split"]))
        rows = dict(zip(table["model / split"], table["rows"], strict=True))
        assert rows == {"default model · test": test.height - 1, "this run · test": test.height - 1,
                        "default model · the corrections": 1, "this run · the corrections (trained on)": 1}


# --- What if, two models, robustness, data, map (issue 22) -----------------------------------------------------------


def open_predict_tab(at: AppTest, name: str) -> AppTest:
    at.session_state["predict_tab"] = name  # as a click on the tab does
    at.run()
    assert not at.exception, at.exception
    return at


def frame_with(at: AppTest, column: str) -> pl.DataFrame:
    return pl.from_pandas(next(d.value for d in at.dataframe if column in d.value.columns))


def test_what_if_shows_both_versions_and_each_codes_change(app, independent):
    code(app, CROISSANTS)
    open_predict_tab(app, "What if")
    editor = next(t for t in app.text_area if t.label == "Edited description")
    assert editor.value == CROISSANTS
    edited = "I sell croissants and pains au chocolat in my garage"
    editor.input(edited).run()
    assert not app.exception, app.exception
    assert any("“bakery” → “garage”" in c.value for c in app.caption)
    comparison = frame_with(app, "probability_after")
    from nace_app.model.classifier import tempered_softmax

    classifier = independent["workspace"].classifier
    before, after = tempered_softmax(classifier.logits([CROISSANTS, edited]), independent["temperature"])
    for row in comparison.iter_rows(named=True):
        column = classifier.label_index[row["code"]]
        assert row["probability_before"] == pytest.approx(100 * before[column], abs=1e-3)
        assert row["change"] == pytest.approx(100 * (after[column] - before[column]), abs=1e-3)
    pair = [h for h in highlights(app) if "garage" in h or "bakery" in h]
    assert any("bakery" in h for h in pair) and any("garage" in h for h in pair)
    next(p for p in app.pills if p.label == "Remove a word").set_value("garage").run()
    assert next(t for t in app.text_area if t.label == "Edited description").value == \
        "I sell croissants and pains au chocolat in my"


def test_two_models_side_by_side_on_predict_and_review(bag_model_dir, independent, monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", str(bag_model_dir))  # a tiny model in the sidebar; the embedded one second
    monkeypatch.setenv("NACE_DATA_URI", "embedded")
    with fresh_app() as at:
        code(at, CROISSANTS)
        open_predict_tab(at, "Two models")
        at.selectbox(key="second_model").set_value("embedded").run()
        assert not at.exception, at.exception
        comparison = frame_with(at, "probability_after")
        assert comparison.filter(pl.col("rank_after") == 1)["code"].item() == "10.71"  # the embedded model's best
        assert sum("nace-highlight" in h.proto.body for h in at.html) >= 2
        at.switch_page("app_pages/review.py").run()
        open_tab(at, "Two models")
        at.selectbox(key="second_model_review").set_value("embedded").run()
        assert not at.exception, at.exception
        figures_table = frame_with(at, "model / split")
        assert figures_table["rows"].to_list() == [independent["test"].height] * 2
        titles = json.dumps([s["layout"].get("title") for s in chart_specs(at)])
        assert titles.count("Reliability diagram") == 2 and titles.count("Accuracy against automation rate") == 2


def test_robustness_lists_the_flipped_rows_one_click_from_their_explanation(review):
    from nace_app.review.robustness import EDITS

    open_tab(review, "Robustness")
    summary = frame_with(review, "unchanged_share")
    assert summary["edit"].to_list() == list(EDITS)
    assert (summary["unchanged"] <= summary["rows"]).all() and summary["rows"].max() <= 1000
    flips = frame_with(review, "edited_text")
    first = flips.row(0, named=True)
    assert first["code_before"] != first["code_after"]
    assert any(h for h in highlights(review) if "+ toward" in h)
    next(b for b in review.button if b.label == f"Open row #{first['row']} in the error browser").click().run()
    assert not review.exception, review.exception
    assert review.session_state["review_view"] == "Errors"
    assert explain_row_box(review).value == first["row"]


def test_data_tab_counts_classes_duplicates_and_accuracy_per_register(review, independent):
    open_tab(review, "Data")
    registers = frame_with(review, "top5")
    assert set(registers["group"].to_list()) == set(independent["test"]["register"].to_list())
    assert registers["rows"].sum() == len(independent["truth"])
    assert metric(review, "Classes in the data") == f"{independent['workspace'].data.frame['code'].n_unique():,}"


def test_the_map_places_every_test_row_and_a_row_opens_its_explanation(review, independent):
    open_tab(review, "Map")
    spec = next(s for s in chart_specs(review) if "as the model sees them" in json.dumps(s["layout"].get("title")))
    assert sum(len(trace["text"]) for trace in spec["data"]) == len(independent["truth"])
    from nace_app.nomenclature.structure import load_nomenclature

    sections = {load_nomenclature().section_of(c) for c in independent["truth"]}
    assert [trace["name"] for trace in spec["data"]] == sorted(sections)
    from nace_app.app.caches import default_workspace

    assert list((default_workspace().settings.cache_dir / "embedding_map").glob("*-pca.npz"))  # kept on disk
    review.number_input(key="map_row").set_value(7).run()
    assert any(m.value.startswith("**Row #7**") for m in review.markdown)
    assert highlights(review)
    review.radio(key="map_colour").set_value("right or wrong").run()
    spec = next(s for s in chart_specs(review) if "as the model sees them" in json.dumps(s["layout"].get("title")))
    assert [trace["name"] for trace in spec["data"]] == ["right", "wrong"]
    review.text_input(key="map_word").input("bakery").run()
    words = frame_with(review, "similarity")
    assert words.height == 10 and "bakery" not in words["word"].to_list()
