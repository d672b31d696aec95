"""The model picker and the shared sidebar: which model the current page works with."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import streamlit as st

from nace_app.app.caches import default_workspace, opened_model
from nace_app.app.state import (
    COVERAGE_KEY,
    DEFAULT_COVERAGE,
    DEFAULT_THRESHOLD,
    MODEL_KEY,
    RULE_KEY,
    RUN_ID_KEY,
    SCORE_KEY,
    THRESHOLD_KEY,
    kept,
)
from nace_app.app.widgets import literal
from nace_app.model.classifier import Classifier
from nace_app.model.opening import DataSet, OpenedModel
from nace_app.review.calibration import AUTOMATION_RULES
from nace_app.review.metrics import AUTOMATION_SCORES
from nace_app.settings.cachefiles import unstored_notice
from nace_app.settings.config import EMBEDDED, Settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import ResolvedSource
from nace_app.training.runs import TrainedRun, list_trained_runs

FAILURE_MEMORY_SECONDS = 30.0


_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")


_failures: dict[str, tuple[float, str]] = {}


_failures_lock = threading.Lock()


def _open_remembering_failures(uri: str) -> OpenedModel:
    """A failed URI is not retried for a while, so a bad run id costs one look-up, not one per rerun."""
    with _failures_lock:
        failed = _failures.get(uri)
    if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_SECONDS:
        raise NaceAppError(failed[1])
    try:
        return opened_model(uri)
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
        options[run.uri] = f"Run {run.name}"
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
        if unstored_notice():
            st.warning(literal(unstored_notice()), icon=":material/sd_card_alert:")
        st.divider()
        kept(st.radio, "Automatic coding rule", AUTOMATION_RULES, key=RULE_KEY, default=AUTOMATION_RULES[0],
             help="Which rule decides on the Predict page that a description is coded without a reviewer: the score "
                  "below against the threshold, or a prediction set (coverage below) that holds one code. Each is "
                  "shown with how often it was right on held-out shifted descriptions.")
        kept(st.radio, "Automate on", AUTOMATION_SCORES, key=SCORE_KEY, default=AUTOMATION_SCORES[0],
             horizontal=True, help="The score compared with the threshold, on the Predict and Review pages alike.")
        kept(st.slider, "Automation threshold", 0.0, 1.0, key=THRESHOLD_KEY, default=DEFAULT_THRESHOLD, step=0.01,
             help="A description whose score reaches this value is coded automatically; below it goes to manual "
                  "review.")
        kept(st.slider, "Prediction-set coverage (%)", 80, 99, key=COVERAGE_KEY, default=round(DEFAULT_COVERAGE * 100),
             help="Each description gets the set of codes that holds the right one this often, for descriptions like "
                  "the held-out texts written apart from the training data (split conformal prediction, APS, "
                  "calibrated on them).")


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

