"""The Streamlit adapter: shared caches, the model picker, the sidebar, and widget state that survives page switches.

Everything else in `nace_app` is plain Python; the pages call it through here only where Streamlit's caches or
session state are involved. (`config` also reads Streamlit secrets, without importing Streamlit at module level.)
"""

from __future__ import annotations

import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import streamlit as st

from nace_app import class_words, conformal, explain, figures
from nace_app.classifier import Candidate, Classifier
from nace_app.config import EMBEDDED, Settings, load_settings
from nace_app.corrections import CorrectionStore
from nace_app.data import fingerprint
from nace_app.errors import NaceAppError
from nace_app.metrics import AUTOMATION_SCORES
from nace_app.neighbours import Neighbour, NeighbourIndex
from nace_app.nomenclature import load_nomenclature
from nace_app.opening import DataSet, OpenedModel, Workspace, open_model, open_workspace
from nace_app.prediction_cache import cached_probabilities
from nace_app.runs import TrainedRun, list_trained_runs
from nace_app.sources import ResolvedSource

MODEL_KEY = "model_uri"
RUN_ID_KEY = "mlflow_run_id"
THRESHOLD_KEY = "automation_threshold"
SCORE_KEY = "automation_score"
COVERAGE_KEY = "coverage_level"
DEFAULT_THRESHOLD = 0.5
DEFAULT_COVERAGE = 0.90
FAILURE_MEMORY_SECONDS = 30.0
_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")
BY_FINGERPRINT = {Classifier: lambda classifier: classifier.fingerprint,
                  DataSet: lambda data: data.fingerprint,
                  pl.DataFrame: fingerprint}
_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in string.punctuation})


_AUTOLINKS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)


def literal(text: str) -> str:
    """User text inside Streamlit markdown (errors, captions): shown as typed, never as a link, image or markup.

    Backslashes escape the markup; a zero-width space stops GitHub-style autolinks (http://, www., e-mail).
    """
    return _AUTOLINKS.sub("\u200b", text).translate(_MARKDOWN_SPECIALS)


def share_the_cores() -> None:
    """One torch thread per thread: N sessions (and a training run) then ask for N threads, not 2N on 2 cores.

    On 2 shared cores this halved the median time to code and explain with 10 sessions (benchmarks/bench_load.py).
    """
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# --- widget state ---------------------------------------------------------------------------------------------------


def widget_key(key: str) -> str:
    """The key of the widget that edits the kept value `key` (tests find widgets by it)."""
    return f"_widget_{key}"


def kept(widget: Callable[..., Any], label: str, *args: Any, key: str, default: Any = None,
         on_change: Callable[[], None] | None = None, **kwargs: Any) -> Any:
    """A widget whose value survives page switches.

    Streamlit forgets a widget's key when its page is not shown, so the value lives under `key` (a plain
    session-state entry it never deletes) and the widget under a shadow key, refilled from it on every run.
    """
    shadow = widget_key(key)
    st.session_state.setdefault(key, default)
    st.session_state[shadow] = st.session_state[key]

    def copy_back() -> None:
        st.session_state[key] = st.session_state[shadow]
        if on_change is not None:
            on_change()

    return widget(label, *args, key=shadow, on_change=copy_back, **kwargs)


# --- models and data ------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the model and data…")
def default_workspace() -> Workspace:
    """The configured sources (or the embedded fallback), shared by every session; never mutated."""
    workspace = open_workspace(load_settings())
    _ = workspace.data  # resolve the data now so the banner can say where it comes from
    return workspace


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def _opened(uri: str) -> OpenedModel:
    """Any model the picker names, loaded once per server; only our own format (a typed run id is user input)."""
    workspace = default_workspace()
    return open_model(uri, workspace.settings, allow_pickle=False, data=workspace.data)


def opened_classifier(uri: str) -> Classifier:
    """A model of the picker (a run trained here, by its folder) without selecting it."""
    return _opened(uri).classifier


_failures: dict[str, tuple[float, str]] = {}
_failures_lock = threading.Lock()


def _open_remembering_failures(uri: str) -> OpenedModel:
    """A failed URI is not retried for a while, so a bad run id costs one look-up, not one per rerun."""
    with _failures_lock:
        failed = _failures.get(uri)
    if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_SECONDS:
        raise NaceAppError(failed[1])
    try:
        return _opened(uri)
    except NaceAppError as exc:
        with _failures_lock:
            _failures[uri] = (time.monotonic(), str(exc))
        raise


@dataclass
class Active:
    """What the current page works with."""

    classifier: Classifier
    source: ResolvedSource
    data: DataSet
    settings: Settings
    is_default: bool
    trained: TrainedRun | None = None


def fail(exc: NaceAppError) -> None:
    st.error(f"Cannot load: {literal(str(exc))}", icon=":material/error:")
    st.stop()


def trained_runs() -> list[TrainedRun]:
    return list_trained_runs(default_workspace().settings.cache_dir)


def model_options() -> dict[str, str]:
    """Model URI -> picker label; '' is the configured default."""
    workspace = default_workspace()
    options = {"": f"Default ({workspace.model_source.shown_uri})"}
    if workspace.model_source.uri != EMBEDDED:
        options[EMBEDDED] = "Embedded demo model"
    for run in trained_runs():
        options[run.uri] = f"Trained here: {run.name}"
    options["runs:"] = "MLflow run…"
    return options


def model_uri_for_link(model: str) -> str | None:
    """The picker's URI for a link's model ("embedded", "runs:/<id>/model", "trained:<run id>"), None if absent."""
    if model.startswith("runs:/"):
        return model
    if model == EMBEDDED and default_workspace().model_source.is_embedded:
        return ""  # the default already is the embedded model
    if model.startswith("trained:"):
        run_id = model.removeprefix("trained:")
        return next((run.uri for run in trained_runs() if run.run_id == run_id), None)
    return model if model in model_options() else None


def chosen_model_uri() -> str:
    uri = st.session_state.get(MODEL_KEY, "")
    if uri == "runs:":
        run_id = str(st.session_state.get(RUN_ID_KEY, "")).strip()
        return f"runs:/{run_id.replace('/', '%2F')}/model" if run_id else ""
    return uri


def _resolve_active() -> Active:
    workspace = default_workspace()
    default = Active(workspace.classifier, workspace.model_source, workspace.data, workspace.settings, True)
    uri = chosen_model_uri()
    if not uri:
        return default
    try:
        if uri.startswith("runs:/") and not _RUN_ID.fullmatch(uri.split("/")[1]):
            raise NaceAppError(f"an MLflow run id has only letters, digits, - and _, got {uri.split('/')[1]!r}")
        opened = _open_remembering_failures(uri)
    except NaceAppError as exc:
        st.sidebar.error(literal(str(exc)), icon=":material/error:")
        return default
    trained = next((run for run in trained_runs() if run.uri == uri), None)
    return Active(opened.classifier, opened.source, workspace.data, workspace.settings, False, trained)


def active() -> Active:
    """The model chosen in the sidebar, resolved once per script run (the sidebar does it first)."""
    resolved = st.session_state.get("_active")
    if resolved is None:
        resolved = _resolve_active()
    return resolved


def use_model(uri: str) -> None:
    """Button callback: select a model in every page's picker."""
    st.session_state[MODEL_KEY] = uri


def sidebar() -> None:
    """Where the model and data come from, the model picker, and the shared automation rule."""
    try:
        workspace = default_workspace()
    except NaceAppError as exc:
        fail(exc)
    st.session_state.pop("_active", None)
    options = model_options()
    if st.session_state.get(MODEL_KEY) not in options:
        st.session_state[MODEL_KEY] = ""
    with st.sidebar:
        kept(st.selectbox, "Model", list(options), key=MODEL_KEY, default="", format_func=options.get)
        if st.session_state.get(MODEL_KEY) == "runs:":
            kept(st.text_input, "MLflow run id", key=RUN_ID_KEY, default="", placeholder="e.g. 3f2a…")
        current = _resolve_active()
        st.session_state["_active"] = current
        reasons = workspace.fallbacks()
        if current.is_default and reasons:
            st.warning("**Offline demo.** The configured sources could not be reached: the embedded demo model "
                       "and data are in use.", icon=":material/cloud_off:")
            with st.expander("Why"):
                for reason in reasons:
                    st.caption(literal(reason))
        elif current.is_default and workspace.model_source.is_embedded:
            st.info("Running on the embedded demo model and data.", icon=":material/info:")
        st.caption(f"**Model:** `{current.source.shown_uri}` · {current.classifier.num_classes} classes")
        st.caption(f"**Data:** `{current.data.source.shown_uri}` · {current.data.frame.height:,} rows")
        if workspace.settings.cache_notice:
            st.caption(literal(workspace.settings.cache_notice))
        st.divider()
        kept(st.radio, "Automate on", AUTOMATION_SCORES, key=SCORE_KEY, default=AUTOMATION_SCORES[0],
             horizontal=True, help="The score compared with the threshold, on the Predict and Review pages alike.")
        kept(st.slider, "Automation threshold", 0.0, 1.0, key=THRESHOLD_KEY, default=DEFAULT_THRESHOLD, step=0.01,
             help="A description whose score reaches this value is coded automatically; below it goes to manual "
                  "review.")
        kept(st.slider, "Prediction-set coverage (%)", 80, 99, key=COVERAGE_KEY, default=round(DEFAULT_COVERAGE * 100),
             help="Each description gets the set of codes that holds the right one this often (split conformal "
                  "prediction, APS). A set of one code is safe to code automatically.")


_COLLAPSE_ON_NARROW_SCREENS = """<script>
(() => {  // once per browser tab: a shared screen of 800 px or less starts with the sidebar folded away
  if (window.innerWidth > 800 || sessionStorage.getItem("nace-sidebar-folded")) return;
  sessionStorage.setItem("nace-sidebar-folded", "1");
  const fold = (tries) => {
    const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const open = sidebar && sidebar.getBoundingClientRect().right > 40;
    if (button && open) button.click(); else if (tries > 0) setTimeout(() => fold(tries - 1), 200);
  };
  fold(25);
})();
</script>"""


def fold_sidebar_on_narrow_screens() -> None:
    """Streamlit folds the sidebar only below 768 px; workshops share screens of 800 px."""
    st.sidebar.html(_COLLAPSE_ON_NARROW_SCREENS, unsafe_allow_javascript=True)


def automation_rule() -> tuple[str, float]:
    return st.session_state.get(SCORE_KEY, AUTOMATION_SCORES[0]), st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD)


# --- cached computations, keyed by fingerprints ---------------------------------------------------------------------


@st.cache_resource(show_spinner="Scoring the test split…", max_entries=8, hash_funcs=BY_FINGERPRINT)
def test_probabilities(classifier: Classifier, data: DataSet) -> np.ndarray:
    """Shared, never copied (10,500 x classes): from the disk cache when present, else computed once."""
    texts = data.splits.test["label"].to_list()
    return cached_probabilities(classifier, texts, data.fingerprint, default_workspace().settings.cache_dir)


@st.cache_resource(show_spinner=False, max_entries=8, hash_funcs=BY_FINGERPRINT)
def review_table(classifier: Classifier, data: DataSet):
    from nace_app.review import test_table

    return test_table(data.splits.test, test_probabilities(classifier, data), classifier.labels,
                      classifier.nomenclature)


@st.cache_resource(show_spinner=False, max_entries=8, hash_funcs=BY_FINGERPRINT)
def test_evaluation(classifier: Classifier, data: DataSet):
    from nace_app.evaluation import evaluate

    return evaluate(data.splits.test["code"].to_list(), test_probabilities(classifier, data), classifier.labels,
                    classifier.nomenclature)


@st.cache_resource
def training_queue():
    """One queue per server: at most NACE_MAX_TRAINING_RUNS runs at once."""
    from nace_app.jobs import TrainingQueue

    return TrainingQueue(default_workspace().settings.max_training_runs)


@st.cache_resource
def job_registry():
    """Every training job of this server, so that a reloaded page can reattach to its own."""
    from nace_app.jobs import JobRegistry

    return JobRegistry()


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def top_candidates(classifier: Classifier, text: str) -> list[Candidate]:
    """The ten best codes; the page slices them for any k without recomputing."""
    return classifier.predict([text], top_k=min(10, classifier.num_classes))[0].candidates


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def reading(classifier: Classifier, text: str) -> tuple[float, int | None]:
    """(share of unknown words, where a windowed model stops reading or None)."""
    from nace_app.tokenization import read_until

    return classifier.unknown_token_share(text), read_until(classifier.tokenizer, text)


@st.cache_data(show_spinner="Explaining…", max_entries=1024, hash_funcs=BY_FINGERPRINT)
def explanation(classifier: Classifier, text: str, code: str) -> explain.Explanation:
    return explain.integrated_gradients(classifier, text, [code])[0]


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def faithfulness_check(classifier: Classifier, text: str, code: str):
    return explain.faithfulness(classifier, text, explanation(classifier, text, code))


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=BY_FINGERPRINT)
def occlusion_drops(classifier: Classifier, text: str, code: str) -> list[float]:
    return explain.occlusion(classifier, text, explanation(classifier, text, code).words, [code])[code]


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=BY_FINGERPRINT)
def label_attention_figure(classifier: Classifier, text: str, code: str):
    words = explain.label_attention(classifier, text, [code])[code]
    return figures.signed_bars([w.word for w in words], [w.score for w in words],
                               f"Label attention of {code} over the words", "attention")


# --- prediction sets, similar examples, corrections, per-class words --------------------------------------------


def coverage_level() -> float:
    """The sidebar's level as a fraction (the slider shows whole percents)."""
    return st.session_state.get(COVERAGE_KEY, round(DEFAULT_COVERAGE * 100)) / 100


def _split_probabilities(classifier: Classifier, data: DataSet, frame: pl.DataFrame) -> np.ndarray:
    """Probabilities of a part of the data, through the disk cache (keyed by the part's own fingerprint)."""
    return cached_probabilities(classifier, frame["label"].to_list(), f"{data.fingerprint}-{fingerprint(frame)}",
                                default_workspace().settings.cache_dir)


@st.cache_resource(show_spinner=False, max_entries=8, hash_funcs=BY_FINGERPRINT)
def calibration_plan(classifier: Classifier, data: DataSet) -> conformal.CalibrationPlan:
    return conformal.calibration_plan(classifier.loaded.training, data.splits)


@st.cache_resource(show_spinner="Calibrating the prediction sets…", max_entries=32, hash_funcs=BY_FINGERPRINT)
def calibrator(classifier: Classifier, data: DataSet, level: float) -> conformal.ConformalCalibrator:
    calibration = calibration_plan(classifier, data).calibration
    return conformal.calibrate(_split_probabilities(classifier, data, calibration),
                               conformal.true_indices(classifier.labels, calibration["code"].to_list()), level)


@st.cache_resource(show_spinner="Measuring the prediction sets…", max_entries=32, hash_funcs=BY_FINGERPRINT)
def coverage_report(classifier: Classifier, data: DataSet, level: float) -> conformal.CoverageReport:
    """The sets' coverage on the held-out rows of the plan, by NACE section."""
    held_out = calibration_plan(classifier, data).held_out
    codes = held_out["code"].to_list()
    return conformal.coverage_report(calibrator(classifier, data, level), _split_probabilities(classifier, data, held_out),
                                     conformal.true_indices(classifier.labels, codes),
                                     [classifier.nomenclature.section_of(code) for code in codes])


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def prediction_set(classifier: Classifier, data: DataSet, text: str, level: float) -> list[str]:
    """The codes of `text`'s set at `level`, most probable first."""
    indices = calibrator(classifier, data, level).sets(classifier.predict_proba([text]))[0]
    return [classifier.labels[i] for i in indices]


@st.cache_resource(show_spinner="Embedding the training rows for similar examples (once per model)…", max_entries=4,
                   hash_funcs=BY_FINGERPRINT)
def neighbour_index(classifier: Classifier, data: DataSet) -> NeighbourIndex:
    return NeighbourIndex.build(classifier, data.splits.train, default_workspace().settings.cache_dir)


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def similar_examples(classifier: Classifier, data: DataSet, text: str, k: int = 5) -> list[Neighbour]:
    return neighbour_index(classifier, data).nearest(text, k)


def similar_examples_table(classifier: Classifier, data: DataSet, text: str) -> None:
    """The nearest training rows as a table (Predict and each error on Review), or why there are none."""
    try:
        similar = similar_examples(classifier, data, text)
    except NaceAppError as exc:
        st.caption(literal(str(exc)))
        return
    st.caption("The training rows this model sees as closest to the description (cosine of its sentence "
               "embeddings): the evidence to check a code against.")
    st.dataframe([{"description": n.text, "code": n.code, "heading": n.heading, "similarity": n.similarity}
                  for n in similar], hide_index=True, width="stretch",
                 column_config={"similarity": st.column_config.NumberColumn("Similarity", format="%.2f")})


@st.cache_resource
def correction_store() -> CorrectionStore:
    """One SQLite file per server under the cache folder; the store holds only its path, so sharing it is safe."""
    return CorrectionStore(default_workspace().settings.cache_dir)


def class_choices() -> dict[str, str]:
    """Every NACE class, labelled so that the picker's search finds it by code or by words of its heading."""
    nomenclature = load_nomenclature()
    return {code: f"{code} · {nomenclature.heading(code)}" for code in nomenclature.codes("class")}


def correction_form(text: str, proposed_code: str, classifier: Classifier, default_code: str, key: str) -> None:
    """Confirm the model's code or record the right one, for `text`; the store keeps who-proposed-what."""
    choices = class_choices()
    with st.form(f"correction_{key}", border=True):
        st.markdown("**Correct the code**")
        columns = st.columns([3, 2])
        corrected = columns[0].selectbox("Right code (type a code or words of its heading)", list(choices),
                                         index=list(choices).index(default_code) if default_code in choices else None,
                                         format_func=choices.get, key=f"corrected_{key}",
                                         placeholder="Search by code or heading")
        comment = columns[1].text_input("Comment (optional)", key=f"comment_{key}")
        buttons = st.columns(2)
        confirm = buttons[0].form_submit_button(f"Confirm {proposed_code}", width="stretch")
        save = buttons[1].form_submit_button("Save the right code", type="primary", width="stretch")
    if not (confirm or save):
        return
    if save and not corrected:
        st.error("Pick the right code first.")
        return
    try:
        saved = correction_store().add(text, proposed_code, proposed_code if confirm else corrected,
                                       classifier.name, classifier.fingerprint, comment)
    except NaceAppError as exc:
        st.error(literal(str(exc)))
        return
    what = f"confirmed {saved.corrected_code}" if saved.is_confirmation else \
        f"{saved.proposed_code} corrected to {saved.corrected_code}"
    st.success(f"Saved #{saved.id}: {what}. Review › Corrections lists it (with an undo); Train can learn from it.",
               icon=":material/check:")


def class_words_table(classifier: Classifier, data: DataSet) -> pl.DataFrame | None:
    """The per-class words when already computed for (model, test data), else None: computing takes a minute."""
    if not class_words.cache_path(classifier, data.splits.test, default_workspace().settings.cache_dir).is_file():
        return None
    return _class_words(classifier, data)


@st.cache_resource(show_spinner=False, max_entries=4, hash_funcs=BY_FINGERPRINT)
def _class_words(classifier: Classifier, data: DataSet) -> pl.DataFrame:
    return class_words.class_words(classifier, data.splits.test, default_workspace().settings.cache_dir)


def compute_class_words(classifier: Classifier, data: DataSet, progress: Callable[[int, int], None]) -> None:
    """Explain every test row once and keep the table on disk (the button's work; not shared while it runs)."""
    class_words.class_words(classifier, data.splits.test, default_workspace().settings.cache_dir, progress=progress)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=BY_FINGERPRINT)
def evaluation_on(classifier: Classifier, frame: pl.DataFrame):
    from nace_app.evaluation import evaluate_classifier

    return evaluate_classifier(classifier, frame)
