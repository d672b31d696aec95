"""Side by side: a description and its edit (what if), two models on one description, two models' test figures."""

from __future__ import annotations

import polars as pl
import streamlit as st

from nace_app.app import caches, figures, picker
from nace_app.app.widgets import literal
from nace_app.explain import attributions, what_if
from nace_app.explain.highlight import highlighted_text_html
from nace_app.model.classifier import Classifier
from nace_app.model.opening import DataSet
from nace_app.review import metrics
from nace_app.review.evaluation import comparison_rows
from nace_app.review.tables import automation_score
from nace_app.settings.errors import NaceAppError

SECOND_MODEL_KEY = "second_model"


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=caches.BY_FINGERPRINT)
def _what_if(classifier: Classifier, original: str, edited: str, top_k: int) -> pl.DataFrame:
    return what_if.what_if(classifier, original, edited, top_k)


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=caches.BY_FINGERPRINT)
def _two_models(first: Classifier, second: Classifier, text: str, top_k: int) -> pl.DataFrame:
    return what_if.two_models(first, second, text, top_k)


def _probability_table(frame: pl.DataFrame, before: str, after: str) -> None:
    """Each code's probability on both sides and its change, in percent and points."""
    shown = frame.with_columns(pl.col("probability_before", "probability_after", "change") * 100).select(
        "code", "probability_before", "probability_after", "change", "rank_before", "rank_after", "heading")  # at 800 px
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "code": st.column_config.TextColumn("Code", width="small"), "heading": "Heading",
        "rank_before": st.column_config.NumberColumn(f"Rank {before}", width="small"),
        "probability_before": st.column_config.NumberColumn(before.capitalize(), format="%.1f%%"),
        "rank_after": st.column_config.NumberColumn(f"Rank {after}", width="small"),
        "probability_after": st.column_config.NumberColumn(after.capitalize(), format="%.1f%%"),
        "change": st.column_config.NumberColumn("Change", format="%+.1f pts",
                                                help="Percentage points, the second side minus the first.")})


def _highlights(sides: list[tuple[str, Classifier, str]], code: str) -> None:
    """Each side's words for `code`, in columns: (title, model, text) per side."""
    for column, (title, classifier, text) in zip(st.columns(len(sides)), sides, strict=True):
        with column:
            st.markdown(f"**{title}**")
            if code not in classifier.label_index:
                st.caption(f"This model does not know `{code}`: nothing to highlight.")
            elif not text.strip():
                st.caption("No text.")
            else:
                explanation = caches.explanation(classifier, text, code)
                st.caption(f"P({code}) = {explanation.probability:.1%}")
                st.html(highlighted_text_html(text, attributions.spans(explanation.words), code))


def _code_to_highlight(frame: pl.DataFrame, key: str, nomenclature) -> str:
    codes = frame["code"].to_list()
    if st.session_state.get(key) not in codes:
        st.session_state[key] = codes[0]
    return st.selectbox("Highlight the words for", codes, key=key,
                        format_func=lambda c: f"{c} · {nomenclature.heading(c)}")


def edit_and_compare(classifier: Classifier, original: str, edited: str, top_k: int, key: str) -> None:
    """The codes and highlights of `original` and `edited` side by side (What if, and a flipped robustness row)."""
    changes = what_if.word_changes(original, edited)
    if changes:
        st.caption("Changes: " + literal(" · ".join(change.sentence() for change in changes)))
    frame = _what_if(classifier, original, edited, top_k)
    _probability_table(frame, "before", "after")
    code = _code_to_highlight(frame, f"{key}_code", classifier.nomenclature)
    _highlights([("Before", classifier, original), ("After", classifier, edited)], code)


def what_if_editor(classifier: Classifier, text: str, top_k: int) -> None:
    """Edit the description in place (or drop a word with one click) and see what each code's probability does."""
    key = f"what_if_{abs(hash(text))}"  # a new description starts a new edit
    st.session_state.setdefault(key, text)

    def drop_word() -> None:
        word = st.session_state.get(f"{key}_drop")
        if word:
            st.session_state[key] = what_if.without_word(st.session_state[key], word)
        st.session_state[f"{key}_drop"] = None

    st.caption("Change the description below (remove, replace or add words): the model codes both versions, and "
               "each code's change in probability and the words behind it are shown side by side.")
    words = what_if.words_of(st.session_state[key])
    if words:
        st.pills("Remove a word", list(dict.fromkeys(words)), key=f"{key}_drop", on_change=drop_word)
    edited = st.text_area("Edited description", key=key, height=90)
    if not edited.strip():
        st.info("The edited description is empty: type a few words.")
        return
    if edited == text:
        st.info("Edit the description above to see what changes.", icon=":material/edit:")
    edit_and_compare(classifier, text, edited, top_k, key)


def second_model_choice(key: str = SECOND_MODEL_KEY) -> tuple[str, Classifier] | None:
    """A second model from the sidebar picker's list (not the one in use), opened; None until one is picked."""
    current = picker.chosen_model_uri()
    options = {uri: label for uri, label in picker.model_options().items() if uri not in ("runs:", current)}
    if not options:
        st.info("This server has one model: train one on the Train page to compare two.")
        return None
    uri = st.selectbox("Second model", list(options), index=None, key=key, format_func=options.get,
                       placeholder="Pick a model to compare with the one in the sidebar")
    if uri is None:
        return None
    try:
        second = caches.default_workspace().classifier if uri == "" else caches.opened_classifier(uri)
    except NaceAppError as exc:
        st.error(f"Cannot load: {literal(str(exc))}", icon=":material/error:")
        return None
    return options[uri], second


def two_models_on_text(classifier: Classifier, text: str, top_k: int) -> None:
    """Predict: both models' candidates and highlights for one description."""
    chosen = second_model_choice()
    if chosen is None:
        return
    label, second = chosen
    if second.fingerprint == classifier.fingerprint:
        st.info("Both choices are the same model.")
    frame = _two_models(classifier, second, text, top_k)
    st.caption(f"First: the sidebar's model · second: {literal(label)}")
    _probability_table(frame, "first", "second")
    code = _code_to_highlight(frame, "two_models_code", classifier.nomenclature)
    _highlights([("First model (sidebar)", classifier, text), (f"Second: {label}", second, text)], code)


def two_models_on_test(classifier: Classifier, data: DataSet, score_name: str, threshold: float) -> None:
    """Review: both models' figures on the test split, side by side."""
    chosen = second_model_choice("second_model_review")
    if chosen is None:
        return
    label, second = chosen
    models = (("First (sidebar)", classifier), (f"Second: {label}", second))
    evaluations = {name: caches.test_evaluation(model, data) for name, model in models}
    st.dataframe(comparison_rows(evaluations), hide_index=True, width="stretch", column_config={
        name: st.column_config.NumberColumn(name, format="%.3f")
        for name in ("top-1", "top-5", "macro-F1", "ECE", "section", "division")})
    for column, (name, model) in zip(st.columns(2), models, strict=True):
        table = caches.review_table(model, data)
        score, correct = automation_score(table, score_name), table["correct"].to_numpy()
        with column:
            st.markdown(f"**{literal(name)}**")
            st.plotly_chart(figures.automation_curve(metrics.automation_curve(score, correct),
                                                     metrics.automation_at(score, correct, threshold)),
                            width="stretch", key=f"two_models_automation_{name}")
            st.plotly_chart(figures.reliability(metrics.reliability_table(table["probability"].to_numpy(), correct)),
                            width="stretch", key=f"two_models_reliability_{name}")
