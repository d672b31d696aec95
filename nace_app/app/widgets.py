"""Pieces several pages draw: user text made literal in markdown, similar examples, the correction form."""

from __future__ import annotations

import re
import string

import polars as pl
import pyarrow as pa
import streamlit as st

from nace_app.app.caches import correction_store, similar_examples, similar_examples_pending
from nace_app.model.classifier import Classifier
from nace_app.model.opening import DataSet
from nace_app.nomenclature.structure import load_nomenclature
from nace_app.settings.errors import NaceAppError

_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in string.punctuation})


_AUTOLINKS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)


def literal(text: str) -> str:
    """User text inside Streamlit markdown (errors, captions): shown as typed, never as a link, image or markup.

    Backslashes escape the markup; a zero-width space stops GitHub-style autolinks (http://, www., e-mail).
    """
    return _AUTOLINKS.sub("\u200b", text).translate(_MARKDOWN_SPECIALS)


def without_none(frame: pl.DataFrame, decimals: int) -> pl.DataFrame:
    """The table for Streamlit's grid, which prints "None" in a missing cell whatever its display format: each
    column with a missing value becomes text, empty there (floats rounded to `decimals` first)."""
    gappy = [name for name in frame.columns if frame[name].null_count()]
    return frame.with_columns(pl.col(name).round(decimals) if frame[name].dtype.is_float() else pl.col(name)
                              for name in gappy).with_columns(pl.col(gappy).cast(pl.String).fill_null(""))


def code_column(label: str) -> st.column_config.TextColumn:
    """Codes are short: narrow columns leave room for the description at 800 px."""
    return st.column_config.TextColumn(label, width="small")


def heading_column(label: str) -> st.column_config.TextColumn:
    """Headings are long and repeat what the code says: placed after the figures, at a width that may scroll."""
    return st.column_config.TextColumn(label, width="medium")


def similar_examples_table(classifier: Classifier, data: DataSet, text: str) -> None:
    """The nearest training rows as a table (Predict and each error on Review), or why there are none."""
    try:
        similar = similar_examples(classifier, data, text)
    except NaceAppError as exc:
        st.caption(literal(str(exc)))
        return
    st.caption("The training rows this model sees as closest to the description (cosine of its sentence "
               "embeddings): the evidence to check a code against.")
    rows = pa.table({"description": pa.array([n.text for n in similar], pa.string()),
                     "code": pa.array([n.code for n in similar], pa.string()),
                     "heading": pa.array([n.heading for n in similar], pa.string()),
                     "similarity": pa.array([n.similarity for n in similar], pa.float64())})
    st.dataframe(rows, hide_index=True, width="stretch",  # an arrow table goes as it is; any other goes through pandas
                 column_order=("code", "similarity", "description", "heading"),
                 column_config={"code": code_column("Code"), "description": st.column_config.TextColumn("Description",
                                                                                                      width="large"),
                                "heading": heading_column("Heading"),
                                "similarity": st.column_config.NumberColumn("Similarity", format="%.2f", width="small")})


def similar_examples_when_ready(classifier: Classifier, data: DataSet, text: str) -> None:
    """The similar examples, or, while the start-up's warm-up still embeds the training rows, a line that gives way
    to them when it is done: the candidates and highlights above never wait for it."""
    if not similar_examples_pending(classifier, data):
        similar_examples_table(classifier, data, text)
        return

    @st.fragment(run_every=1.0)
    def waiting() -> None:
        if similar_examples_pending(classifier, data):
            st.caption("Embedding the training rows for similar examples (once per model, after start-up)…")
        else:
            st.rerun()  # the whole page, whose next run shows the table and stops this polling

    waiting()


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

