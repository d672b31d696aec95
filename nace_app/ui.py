"""Shared Streamlit pieces: cached models and data, the sidebar, and small widgets. The only module importing streamlit."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from nace_app import explain, figures
from nace_app.classifier import Candidate, Classifier
from nace_app.config import EMBEDDED, Settings, load_settings
from nace_app.errors import NaceAppError
from nace_app.modelio import is_own_format
from nace_app.sources import ResolvedSource, resolve
from nace_app.workspace import DataSet, Workspace, cached_probabilities, open_model, open_workspace

THRESHOLD_KEY = "automation_threshold"
THRESHOLD_WIDGET_KEY = "automation_threshold_slider"
MODEL_CHOICE_KEY = "model_choice"
TRAINED_KEY = "trained_models"
DEFAULT_THRESHOLD = 0.5


@st.cache_resource(show_spinner="Loading the model and data…")
def default_workspace() -> Workspace:
    """The configured sources (or the embedded fallback), shared by every session; never mutated."""
    workspace = open_workspace(load_settings())
    _ = workspace.data  # resolve the data now so the banner can say where it comes from
    return workspace


@st.cache_resource(show_spinner="Loading the model…")
def classifier_for(uri: str) -> tuple[Classifier, ResolvedSource]:
    """Any other model the picker names (embedded, a trained run, an MLflow run), loaded once per server."""
    settings = default_workspace().settings.with_overrides(model_uri=uri)
    source = resolve("model", uri, True, settings)
    if uri.startswith("runs:/") and not is_own_format(source.local_path):  # a typed run id is user input
        raise NaceAppError("the app loads MLflow runs only in NACE Explorer's own format (no pickles)")
    classifier, _ = open_model(settings, source, data=default_workspace().data)
    return classifier, source


@dataclass
class Active:
    """What the current page works with."""

    classifier: Classifier
    source: ResolvedSource
    data: DataSet
    settings: Settings


def fail(exc: NaceAppError) -> None:
    st.error(f"**Cannot load:** {exc}")
    st.stop()


def model_options() -> dict[str, str]:
    """Picker label -> model URI ('' for the configured default)."""
    workspace = default_workspace()
    options = {f"Default source ({workspace.model_source.uri})": ""}
    if workspace.model_source.uri != EMBEDDED:
        options["Embedded demo model"] = EMBEDDED
    for name, path in st.session_state.get(TRAINED_KEY, {}).items():
        options[f"Trained here: {name}"] = str(path)
    options["MLflow run…"] = "runs:"
    return options


def active() -> Active:
    """The model chosen in the sidebar picker, with the configured data."""
    try:
        workspace = default_workspace()
    except NaceAppError as exc:
        fail(exc)
    options = model_options()
    choice = st.session_state.get(MODEL_CHOICE_KEY)
    uri = options.get(choice, "") if choice else ""
    if uri == "runs:":
        run_id = st.session_state.get("mlflow_run_id", "").strip()
        uri = f"runs:/{run_id}/model" if run_id else ""
    if not uri:
        return Active(workspace.classifier, workspace.model_source, workspace.data, workspace.settings)
    try:
        classifier, source = classifier_for(uri)
    except NaceAppError as exc:
        st.sidebar.error(str(exc))
        return Active(workspace.classifier, workspace.model_source, workspace.data, workspace.settings)
    return Active(classifier, source, workspace.data, workspace.settings)


PAGE_STATE_KEYS = ("description", "top_k", "selected_code", "rival_code", "automation_score", "class_search",
                   "class_section", "matrix_level", "filter_true", "filter_section", "filter_predicted",
                   "filter_probability", "filter_outcome", "filter_search", "review_row")


def keep_page_state() -> None:
    """Streamlit drops a widget's value when its page is not shown: keep a copy, and put it back when it is gone."""
    for key in PAGE_STATE_KEYS:
        kept = f"kept_{key}"
        if key in st.session_state:
            st.session_state[kept] = st.session_state[key]
            st.session_state[key] = st.session_state[key]
        elif kept in st.session_state:
            st.session_state[key] = st.session_state[kept]


def _keep_threshold() -> None:
    st.session_state[THRESHOLD_KEY] = st.session_state[THRESHOLD_WIDGET_KEY]


def sidebar() -> None:
    """Sources and why, the fallback banner, the model picker and the shared automation threshold."""
    try:
        workspace = default_workspace()
    except NaceAppError as exc:
        fail(exc)
    with st.sidebar:
        reasons = workspace.fallbacks()
        if reasons:
            st.warning("**Offline demo.** The configured sources could not be reached, so the app runs on the "
                       "embedded demo model and data.", icon=":material/cloud_off:")
            with st.expander("Why"):
                for reason in reasons:
                    st.caption(reason)
        if workspace.model_source.is_embedded and not reasons:
            st.info("Running on the embedded demo model and data.", icon=":material/info:")
        st.selectbox("Model", list(model_options()), key=MODEL_CHOICE_KEY)
        if st.session_state.get(MODEL_CHOICE_KEY) == "MLflow run…":
            st.text_input("MLflow run id", key="mlflow_run_id", placeholder="e.g. 3f2a…")
        current = active()
        st.caption(f"**Model:** `{current.source.uri}` · {current.classifier.num_classes} classes · "
                   f"labels from {current.classifier.loaded.labels_from}")
        st.caption(f"**Data:** `{current.data.source.uri}` · {current.data.frame.height:,} rows")
        # a widget's own key does not survive every page switch: keep the value under a plain key and copy it in
        st.session_state.setdefault(THRESHOLD_KEY, DEFAULT_THRESHOLD)
        st.session_state[THRESHOLD_WIDGET_KEY] = st.session_state[THRESHOLD_KEY]
        st.slider("Automation threshold", 0.0, 1.0, step=0.01, key=THRESHOLD_WIDGET_KEY, on_change=_keep_threshold,
                  help="A description whose confidence reaches this value is coded automatically; "
                       "below it goes to manual review. Shared by the Predict and Review pages.")


@st.cache_resource(show_spinner="Scoring the test split…", max_entries=8)  # shared, never copied: 10,500 x classes
def test_probabilities(_classifier: Classifier, model_fingerprint: str, _data: DataSet,
                       data_fingerprint: str) -> np.ndarray:
    """Test-split probabilities: from the disk cache when present (restarts reuse it), else computed once."""
    texts = _data.splits.test["label"].to_list()
    return cached_probabilities(_classifier, texts, data_fingerprint, default_workspace().settings.cache_dir)


@st.cache_resource(show_spinner=False, max_entries=8)  # read-only, shared by sessions without a copy per rerun
def review_table(_classifier: Classifier, model_fingerprint: str, _data: DataSet, data_fingerprint: str):
    from nace_app.review import test_table

    probabilities = test_probabilities(_classifier, model_fingerprint, _data, data_fingerprint)
    return test_table(_data.splits.test, probabilities, _classifier.labels, _classifier.nomenclature)


@st.cache_resource
def training_queue():
    """One queue per server: at most NACE_MAX_TRAINING_RUNS runs at once."""
    from nace_app.jobs import TrainingQueue

    return TrainingQueue(default_workspace().settings.max_training_runs)


@st.cache_data(show_spinner=False, max_entries=8)
def token_lengths_hint(_data: DataSet, data_fingerprint: str) -> list[int]:
    """Token counts of the train split under the default model's tokenizer, for the derived output_dim."""
    texts = _data.splits.train["label"].to_list()
    return [len(ids) for ids in default_workspace().classifier.encode(texts).ids]


@st.cache_data(show_spinner="Scoring the default model on the test split…", max_entries=8)
def default_test_figures(_data: DataSet, data_fingerprint: str) -> dict:
    from nace_app.training import evaluate_frame

    return evaluate_frame(default_workspace().classifier, _data.splits.test)


# --- HTML widgets: every piece of user text goes through html.escape --------------------------------------------


def _colour(score: float, scale: float) -> str:
    """Diverging palette: blue toward the code, red away from it."""
    strength = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    rgb = (33, 102, 172) if score >= 0 else (178, 24, 43)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.08 + 0.72 * strength:.2f})"


def highlighted_text_html(text: str, words: list[tuple[int, int, float]], label: str) -> str:
    """The text with each word's background set by its signed score; the score shows on hover."""
    scale = max((abs(s) for _, _, s in words), default=0.0)
    parts, cursor = [], 0
    for start, end, score in sorted(words):
        if start < cursor:
            continue
        parts.append(html.escape(text[cursor:start]))
        parts.append(
            f'<span class="nace-word" title="{score:+.3f}" style="background:{_colour(score, scale)};'
            f'padding:1px 3px;border-radius:4px">{html.escape(text[start:end])}</span>'
        )
        cursor = end
    parts.append(html.escape(text[cursor:]))
    legend = (
        '<div style="font-size:0.8rem;margin-top:6px;color:#555">'
        f'<span style="background:{_colour(1, 1)};padding:1px 6px;border-radius:4px">toward {html.escape(label)}</span> '
        f'<span style="background:{_colour(-1, 1)};padding:1px 6px;border-radius:4px">away from it</span> '
        "· hover a word for its score</div>"
    )
    return (
        '<div class="nace-highlight" style="font-size:1.1rem;line-height:2.1;white-space:pre-wrap">'
        + "".join(parts) + "</div>" + legend
    )


def probability_bar_html(probability: float) -> str:
    width = max(0.0, min(probability, 1.0)) * 100
    return (
        '<div style="background:#e8edf3;border-radius:4px;height:14px;width:100%">'
        f'<div style="background:#1f4e79;width:{width:.1f}%;height:14px;border-radius:4px"></div></div>'
    )


def use_trained_model(name: str, path: Path) -> None:
    """Button callback: list the model in this session's picker and select it."""
    st.session_state.setdefault(TRAINED_KEY, {})[name] = str(path)
    st.session_state[MODEL_CHOICE_KEY] = f"Trained here: {name}"


# --- cached computations for the Predict page: keyed by model fingerprint, never recomputed on reruns -------------

@st.cache_data(show_spinner=False, max_entries=512)
def top_candidates(_classifier: Classifier, fingerprint: str, text: str) -> list[Candidate]:
    """The ten best codes; the page slices them for any k without recomputing."""
    return _classifier.predict([text], top_k=min(10, _classifier.num_classes))[0].candidates


@st.cache_data(show_spinner=False, max_entries=512)
def unknown_share(_classifier: Classifier, fingerprint: str, text: str) -> float:
    return _classifier.unknown_token_share(text)


@st.cache_data(show_spinner="Explaining…", max_entries=1024)
def explanation(_classifier: Classifier, fingerprint: str, text: str, code: str) -> explain.Explanation:
    return explain.integrated_gradients(_classifier, text, [code])[0]


@st.cache_data(show_spinner=False, max_entries=512)
def faithfulness_check(_classifier: Classifier, fingerprint: str, text: str, code: str):
    return explain.faithfulness(_classifier, text, explanation(_classifier, fingerprint, text, code))


def word_and_char_figures(result: explain.Explanation, text: str):
    words, word_weights, char_weights = explain.word_and_char_views(result, text)
    return (figures.word_weights(words, word_weights, f"Word-level attributions for {result.code} (softmax)"),
            figures.char_weights(text, char_weights, f"Character-level attributions for {result.code} (softmax)"))


@st.cache_data(show_spinner=False, max_entries=256)
def occlusion_figure(_classifier: Classifier, fingerprint: str, text: str, code: str):
    words = explanation(_classifier, fingerprint, text, code).words
    drops = explain.occlusion(_classifier, text, words, [code])[code]
    return figures.signed_bars([w.word for w in words], drops, f"Drop in P({code}) when the word is removed",
                               "probability drop")


@st.cache_data(show_spinner=False, max_entries=256)
def label_attention_figure(_classifier: Classifier, fingerprint: str, text: str, code: str):
    words = explain.label_attention(_classifier, text, [code])[code]
    return figures.signed_bars([w.word for w in words], [w.score for w in words],
                               f"Label attention of {code} over the words", "attention")
