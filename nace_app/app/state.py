"""Widget state that survives page switches, and the shared settings the sidebar keeps (rule, coverage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from nace_app.review.calibration import AUTOMATION_RULES
from nace_app.review.metrics import AUTOMATION_SCORES

MODEL_KEY = "model_uri"


RUN_ID_KEY = "mlflow_run_id"


THRESHOLD_KEY = "automation_threshold"


SCORE_KEY = "automation_score"


COVERAGE_KEY = "coverage_level"


RULE_KEY = "automatic_coding_rule"


DEFAULT_THRESHOLD = 0.5


DEFAULT_COVERAGE = 0.90


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


def automation_rule() -> tuple[str, float]:
    return st.session_state.get(SCORE_KEY, AUTOMATION_SCORES[0]), st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD)


def coding_rule() -> str:
    """The sidebar's automatic coding rule: the score against the threshold, or a prediction set of one code."""
    return st.session_state.get(RULE_KEY, AUTOMATION_RULES[0])


def coverage_level() -> float:
    """The sidebar's level as a fraction (the slider shows whole percents)."""
    return st.session_state.get(COVERAGE_KEY, round(DEFAULT_COVERAGE * 100)) / 100

