"""Every page through Streamlit's AppTest, on the embedded demo model and data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from nace_app.config import load_settings
from nace_app.workspace import open_workspace
from tests.conftest import REPO

APP = str(REPO / "app.py")


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


def code(at: AppTest, text: str) -> AppTest:
    at.text_area(key="description").input(text)
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    return at


def candidate_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value[:2] == "**" and "`" in m.value[:8]]


# --- Predict ----------------------------------------------------------------------------------------------------


def test_before_input_the_page_shows_a_hint_and_examples(app):
    assert any("Type a description" in i.value for i in app.info)
    labels = [b.label for b in app.button]
    assert "I sell croissants and pains au chocolat in my bakery" in labels
    assert "I repair cars and carry out technical inspections" in labels
    assert candidate_lines(app) == []


def test_coding_a_description_shows_candidates_paths_and_highlights(app):
    code(app, "I sell croissants and pains au chocolat in my bakery")
    lines = candidate_lines(app)
    assert len(lines) == 5 and lines[0].startswith("**1. `10.71`**")
    assert any("C Manufacturing" in c.value or "MANUFACTURING" in c.value for c in app.caption)
    highlights = [h.proto.body for h in app.html if "nace-highlight" in h.proto.body]
    assert highlights and 'class="nace-word"' in highlights[0] and "croissants" in highlights[0]
    assert app.query_params["text"] == "I sell croissants and pains au chocolat in my bakery"
    assert app.query_params["k"] == "5" and app.query_params["code"] == "10.71"
    assert any("Confidence index" in m.label for m in app.metric)


def test_example_button_codes_the_example(app):
    next(b for b in app.button if b.label.startswith("I develop business")).click().run()
    assert app.text_area(key="description").value == "I develop business management software for companies"
    assert len(candidate_lines(app)) == 5


def test_top_k_and_candidate_switch_do_not_recompute_predictions(app, monkeypatch):
    code(app, "I repair cars and carry out technical inspections")
    from nace_app.classifier import Classifier

    calls = []
    original = Classifier.predict
    monkeypatch.setattr(Classifier, "predict", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    app.slider(key="top_k").set_value(3).run()
    assert len(candidate_lines(app)) == 3
    second = app.radio(key="selected_code").options[1]
    app.radio(key="selected_code").set_value(second).run()
    assert any(second in c.value for c in app.caption if "Integrated gradients" in c.value)
    assert app.query_params["code"] == second and app.query_params["k"] == "3"
    assert calls == []


def test_contrastive_view_compares_two_candidates(app):
    code(app, "I repair cars and carry out technical inspections")
    app.session_state["explain_view"] = "Why A rather than B"  # opening a tab, as a click does
    app.run()
    options = app.selectbox(key="rival_code").options
    rival = options[-1].split(" · ")[0]  # AppTest lists the formatted labels
    app.selectbox(key="rival_code").set_value(rival).run()
    bodies = [h.proto.body for h in app.html if f" over {rival}" in h.proto.body]
    assert bodies
    assert not [h for h in app.html if "nace-highlight" in h.proto.body and " over " not in h.proto.body]


@pytest.mark.parametrize("view", ["Word & character views", "Leave one word out"])
def test_other_explanation_views_draw_their_charts(app, view):
    code(app, "I sell croissants and pains au chocolat in my bakery")
    app.session_state["explain_view"] = view
    app.run()
    assert not app.exception and app.get("plotly_chart")


def test_shared_link_reproduces_the_view(embedded):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"text": "I develop business management software for companies", "k": "3",
                            "code": "not-a-code<script>"})
    at.run()
    assert len(candidate_lines(at)) == 3
    assert at.radio(key="selected_code").value == at.radio(key="selected_code").options[0]


@pytest.mark.parametrize("text", ["", "    \n  "])
def test_empty_text_gives_a_hint_not_an_error(app, text):
    code(app, text)
    assert any("Type a description" in i.value for i in app.info) and not app.error


def test_long_text_is_truncated_with_a_notice(app):
    code(app, "bakery " * 400)
    assert any("only the first 2,000" in w.value for w in app.warning)
    assert len(candidate_lines(app)) == 5


@pytest.mark.parametrize("text", ["🍞🥐🍰 😀", "日本のパン屋さん", "!!! ??? ...", "\x00\x07\x1b bakery\x7f"])
def test_unusual_input_still_predicts(app, text):
    code(app, text)
    assert len(candidate_lines(app)) == 5
    if text[0] in "🍞日":
        assert any("unknown to the model" in w.value for w in app.warning)


def test_markup_typed_by_the_user_is_shown_as_text(app):
    code(app, '<script>alert("x")</script> <img src=x onerror=alert(1)> bakery')
    bodies = [h.proto.body for h in app.html]
    assert bodies and all("<script>" not in b and "<img" not in b for b in bodies)
    assert any("&lt;" in b and "&gt;" in b and "&quot;" in b for b in bodies)


def test_batch_coding_of_a_semicolon_latin1_csv(app):
    content = "id;description\n1;boulangerie pâtisserie\n2;software development\n3;taxi driver\n".encode("latin-1")
    app.file_uploader(key="batch_file").set_value(("firms.csv", content, "text/csv")).run()
    assert app.selectbox(key="batch_column").value == "description"
    next(b for b in app.button if b.label == "Code the file").click().run()
    assert not app.exception
    frame = app.dataframe[-1].value
    assert frame.shape[0] == 3 and {"id", "code_1", "heading_1", "probability_1", "code_3"} <= set(frame.columns)
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download parquet"]


def test_batch_upload_errors_are_messages(app):
    app.file_uploader(key="batch_file").set_value(("empty.csv", b"", "text/csv")).run()
    assert any("empty" in e.value for e in app.error) and not app.exception


def test_sidebar_names_the_sources_and_offers_the_model_picker(app):
    captions = " ".join(c.value for c in app.sidebar.caption)
    assert "embedded" in captions and "651 classes" in captions
    picker = app.sidebar.selectbox(key="model_choice")
    assert picker.options[0].startswith("Default source") and "MLflow run…" in picker.options


def test_fallback_banner_when_the_default_remote_is_unreachable(monkeypatch):
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        assert any("Offline demo" in w.value for w in at.sidebar.warning)
        assert any("model source" in c.value and "unavailable" in c.value for c in at.sidebar.caption)
    finally:
        st.cache_resource.clear()


# --- Review -------------------------------------------------------------------------------------------------------


@pytest.fixture
def review(app):
    app.switch_page("app_pages/review.py").run()
    assert not app.exception, app.exception
    return app


@pytest.fixture(scope="module")
def independent(request):
    """Figures computed here, without the page's code paths."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NACE_MODEL_URI", "embedded")
    mp.setenv("NACE_DATA_URI", "embedded")
    workspace = open_workspace(load_settings())
    mp.undo()
    test = workspace.data.splits.test
    classifier = workspace.classifier
    probabilities = classifier.predict_proba(test["label"].to_list())
    predicted = np.array(classifier.labels)[probabilities.argmax(1)]
    truth = np.array(test["code"].to_list())
    return {"test": test, "probabilities": probabilities, "predicted": predicted, "truth": truth}


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_headline_figures_match_an_independent_computation(review, independent):
    truth, predicted, probabilities = independent["truth"], independent["predicted"], independent["probabilities"]
    assert metric(review, "Test rows") == f"{len(truth):,}"
    assert metric(review, "Top-1 accuracy") == f"{np.mean(truth == predicted):.1%}"
    labels = np.array(open_workspace_labels())
    top5 = labels[np.argsort(-probabilities, axis=1)[:, :5]]
    assert metric(review, "Top-5 accuracy") == f"{np.mean((top5 == truth[:, None]).any(1)):.1%}"
    assert metric(review, "Accuracy · division") == f"{np.mean([t[:2] == p[:2] for t, p in zip(truth, predicted, strict=True)]):.1%}"
    assert any("trained here on the train split of this very data" in s.value for s in review.success)


def open_workspace_labels():
    from nace_app.modelio import load_model
    from nace_app.sources import embedded_model_dir

    return load_model(embedded_model_dir()).labels


def test_threshold_set_in_the_sidebar_moves_the_automation_figures(app, independent):
    confidence = independent["probabilities"].max(1)
    app.slider(key="automation_threshold_slider").set_value(0.8).run()  # the sidebar, shared by every page
    app.switch_page("app_pages/review.py").run()
    assert not app.exception
    assert metric(app, "Coded automatically") == f"{np.mean(confidence >= 0.8):.1%}"
    correct = independent["truth"] == independent["predicted"]
    assert metric(app, "Confident errors slipping through") == f"{int(((confidence >= 0.8) & ~correct).sum()):,}"
    app.radio(key="automation_score").set_value("confidence index").run()
    top2 = -np.sort(-independent["probabilities"], axis=1)[:, :2]
    assert metric(app, "Coded automatically") == f"{np.mean(top2[:, 0] - top2[:, 1] >= 0.8):.1%}"


def open_tab(at: AppTest, name: str) -> None:
    at.session_state["review_view"] = name  # as a click on the tab does
    at.run()
    assert not at.exception, at.exception


def test_filters_narrow_the_misclassification_browser(review, independent):
    open_tab(review, "Misclassifications")
    truth, predicted, probabilities = independent["truth"], independent["predicted"], independent["probabilities"]
    wrong = truth != predicted
    assert any(f"{wrong.sum():,} rows" in c.value for c in review.caption)
    review.text_input(key="filter_true").input("47").run()
    expected = int((wrong & np.char.startswith(truth.astype(str), "47")).sum())
    assert any(f"{expected:,} rows" in c.value for c in review.caption)
    review.slider(key="filter_probability").set_value((0.5, 1.0)).run()
    confident = probabilities.max(1) >= 0.5
    expected = int((wrong & confident & np.char.startswith(truth.astype(str), "47")).sum())
    assert any(f"{expected:,} rows" in c.value for c in review.caption) or expected == 0


def test_selecting_a_row_shows_its_top5_and_both_explanations(review, independent):
    open_tab(review, "Misclassifications")
    options = review.selectbox(key="review_row").options
    row = int(options[0].split(" ")[0].lstrip("#"))
    review.selectbox(key="review_row").set_value(row).run()
    assert not review.exception
    bodies = [h.proto.body for h in review.html if "nace-highlight" in h.proto.body]
    assert len(bodies) == 3  # predicted, true, and "predicted rather than true"
    assert independent["predicted"][row] in " ".join(m.value for m in review.markdown)


def test_per_class_search_and_confusion_cell(review):
    open_tab(review, "Per class")
    review.text_input(key="class_search").input("bread").run()
    table = next(d.value for d in review.dataframe if "support" in d.value.columns)
    assert 0 < len(table) < 10 and all("bread" in h.lower() or c.startswith("bread") for c, h in
                                       zip(table["code"], table["heading"], strict=True))
    open_tab(review, "Confusions")
    review.selectbox(key="cell_true").set_value("C").run()
    review.selectbox(key="cell_predicted").set_value("G").run()
    assert any("(C → G)" in c.value for c in review.caption)


def test_review_warns_about_codes_the_model_does_not_know(embedded, monkeypatch, tmp_path, demo_frame):
    odd = demo_frame.with_columns(pl.when(pl.col("code") == "10.71").then(pl.lit("10.79")).otherwise(pl.col("code"))
                                  .alias("code"))
    path = tmp_path / "odd.parquet"
    odd.write_parquet(path)
    monkeypatch.setenv("NACE_DATA_URI", str(path))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        at.switch_page("app_pages/review.py").run()
        assert not at.exception
        assert any("codes the model does not know" in w.value and "10.79" in w.value for w in at.warning)
    finally:
        st.cache_resource.clear()


# --- Train --------------------------------------------------------------------------------------------------------


def test_training_run_from_the_page_is_usable_at_once(app):
    app.switch_page("app_pages/train.py").run()
    assert any("Estimated duration" in c.value for c in app.caption)
    app.number_input[0].set_value(700)
    app.slider[1].set_value(1)  # epochs (the sidebar threshold is slider 0)
    app.form_submit_button[0].click().run()
    job = app.session_state["training_job"]
    job.join(timeout=300)
    app.run()
    assert not app.exception, app.exception
    assert job.state == "done", job.error
    assert any("validation loss" in p.proto.spec for p in app.get("plotly_chart"))
    assert any("MLflow run" in c.value for c in app.caption)
    next(b for b in app.button if b.label == "Use this model").click().run()
    assert app.session_state["model_choice"] == f"Trained here: {job.job_id}"
    app.switch_page("app_pages/predict.py").run()
    assert str(job.result.model_dir) in " ".join(c.value for c in app.caption)
    code(app, "bakery")
    assert len(candidate_lines(app)) == 5


def test_calibration_tab_draws_the_reliability_diagram_and_histogram(review):
    open_tab(review, "Calibration")
    specs = [chart.proto.spec for chart in review.get("plotly_chart")]
    assert any("Reliability diagram" in s for s in specs) and any("correct vs incorrect" in s for s in specs)


def test_model_picker_loads_an_mlflow_run_in_our_format(embedded, tiny_frame, tmp_path):
    from nace_app.jobs import run_logged_training
    from nace_app.sources import ResolvedSource
    from nace_app.training import TrainingSettings
    from nace_app.workspace import DataSet

    data = DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)
    settings = TrainingSettings(sample_size=None, epochs=1, batch_size=16, embedding_dim=16, vocab_size=300)
    _, run = run_logged_training(data, settings, load_settings(), tmp_path / "work")
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        at.selectbox(key="model_choice").set_value("MLflow run…").run()
        at.text_input(key="mlflow_run_id").input(run.run_id).run()
        assert not at.exception
        assert f"runs:/{run.run_id}/model" in " ".join(c.value for c in at.caption)
        at.text_input(key="mlflow_run_id").input("no-such-run").run()
        assert any("unavailable" in e.value for e in at.sidebar.error)
    finally:
        st.cache_resource.clear()
