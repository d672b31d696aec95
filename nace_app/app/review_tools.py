"""Review's Robustness, Data and Map tabs: their caches and their drawing (the computing is in `nace_app.review`)."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import polars as pl
import streamlit as st
from plotly.colors import qualitative

from nace_app.app import caches, comparisons
from nace_app.app.widgets import literal
from nace_app.explain import attributions
from nace_app.explain.highlight import highlighted_text_html
from nace_app.model.classifier import Classifier
from nace_app.model.opening import DataSet
from nace_app.nomenclature.structure import load_nomenclature
from nace_app.review import data_checks, embedding_map, robustness
from nace_app.settings.errors import NaceAppError

ERRORS_TAB = "Errors"
MAP_ROW_KEY = "map_row"


def open_in_error_browser(row: int) -> None:
    """Button callback: the Errors tab, explaining test row `row` (its full explanation, similar rows, correction)."""
    st.session_state.review_row = row
    st.session_state.review_view = ERRORS_TAB


# --- Robustness ---------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Editing the test rows as people type, and coding them again…", max_entries=8,
                   hash_funcs=caches.BY_FINGERPRINT)
def _robustness(classifier: Classifier, data: DataSet, seed: int) -> robustness.RobustnessReport:
    table = caches.review_table(classifier, data)
    return robustness.robustness_report(classifier, table["text"].to_list(), table["true_code"].to_list(),
                                        table["predicted_code"].to_list(), seed)


def show_robustness(classifier: Classifier, data: DataSet, top_k: int = 5) -> None:
    seed = int(st.columns([1, 3])[0].number_input("Seed", 0, 10_000, robustness.DEFAULT_SEED, key="robustness_seed",
                                                  help="Which rows are sampled and where the typos and added words fall; the same seed "
                                    "gives the same edits."))
    report = _robustness(classifier, data, seed)
    st.caption(f"{report.rows:,} test rows (a sample drawn with seed {seed} when the split is larger), each edited "
               "once per kind of edit, as people type: does the model keep its top code?")
    st.dataframe(report.summary.with_columns(pl.col("unchanged_share") * 100), hide_index=True, width="stretch",
                 column_config={
        "edit": "Edit", "rows": st.column_config.NumberColumn("Rows it applies to", width="small"),
        "unchanged": st.column_config.NumberColumn("Same top code", width="small"),
        "same_tokens": st.column_config.NumberColumn("Same tokens", width="small",
                                                     help="Rows whose edited text the tokenizer turns into the same "
                                                          "tokens (an n-gram model lowercases and drops punctuation): "
                                                          "the model cannot see this edit."),
        "unchanged_share": st.column_config.ProgressColumn("Share unchanged", format="%.1f%%", min_value=0.0,
                                                           max_value=100.0),
        "right_to_wrong": st.column_config.NumberColumn("Right → wrong", width="small",
                                                        help="Rows coded right before the edit and wrong after it.")})
    flips = report.flips
    if flips.height == 0:
        st.success("No edit changed a top code.")
        return
    edits = [e for e in robustness.EDITS if e in set(flips["edit"].to_list())]
    edit = st.selectbox("Rows whose top code changed under", edits, key="robustness_edit")
    shown = flips.filter(pl.col("edit") == edit)
    st.caption(f"{shown.height:,} rows · click one to compare its two versions")
    event = st.dataframe(shown.select("row", "code_before", "code_after", "true_code", "text", "edited_text"),
                         hide_index=True, width="stretch", height=280, on_select="rerun", selection_mode="single-row",
                         key=f"robustness_flips_{seed}_{edit}", column_config={
                             "row": st.column_config.NumberColumn("Row", width="small"), "text": "Description",
                             "edited_text": "Edited", "code_before": "Code", "code_after": "Code after edit",
                             "true_code": "True"})
    picked = event.selection.rows if event and event.selection else []
    flip = shown.row(picked[0] if picked else 0, named=True)
    st.markdown(f"**Row #{flip['row']}** · {literal(edit)}: `{flip['code_before']}` → `{flip['code_after']}` "
                f"(true `{flip['true_code']}`)")
    st.button(f"Open row #{flip['row']} in the error browser", on_click=open_in_error_browser, args=(flip["row"],),
              icon=":material/open_in_new:", key="robustness_open_row")
    comparisons.edit_and_compare(classifier, flip["text"], flip["edited_text"], top_k, key="robustness_flip")


# --- Data ---------------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Checking the data…", max_entries=8, hash_funcs=caches.BY_FINGERPRINT)
def _data_checks(data: DataSet) -> tuple[pl.DataFrame, pl.DataFrame]:
    splits = data.splits
    return (data_checks.class_counts(splits.train, splits.validation, splits.test, load_nomenclature()),
            data_checks.shared_descriptions(splits.train, splits.test))


def show_data(data: DataSet, table: pl.DataFrame) -> None:
    counts, shared = _data_checks(data)
    thin = counts.filter(pl.col("too_few"))
    st.subheader("Rows per class")
    columns = st.columns(3)
    columns[0].metric("Classes in the data", f"{counts.height:,}")
    columns[1].metric(f"Fewer than {data_checks.MIN_TEST_ROWS} test rows", f"{thin.height:,}",
                      help="Their per-class figures move by 20 points or more with a single row: too few to judge.")
    columns[2].metric("Median test rows per class", f"{counts['test'].median():.0f}")
    st.dataframe(counts.select("code", "test", "too_few", "train", "validation", "total", "heading"), hide_index=True,
                 width="stretch", height=260, column_config={
        "code": st.column_config.TextColumn("Code", width="small"), "heading": "Heading", "train": "Train",
        "validation": "Validation", "test": "Test", "total": "Total",
        "too_few": st.column_config.CheckboxColumn("Too few", width="small")})

    st.subheader("Test rows that are also training rows")
    summary = data_checks.accuracy_with_and_without(table["correct"].to_list(), shared["row"].to_list())
    columns = st.columns(3)
    columns[0].metric("Shared with training", f"{summary['shared_rows']:,}",
                      help=f"Same text once normalised (case, accents, punctuation), or the same set of words: of "
                           f"{table.height:,} test rows.")
    for column, label, value in ((columns[1], "Top-1 on them", summary["shared_accuracy"]),
                                 (columns[2], "Top-1 on the others", summary["other_accuracy"])):
        column.metric(label, "–" if value is None else f"{value:.1%}")
    if shared.height:
        st.caption("The model saw these descriptions while training: they inflate the test figures by the gap above.")
        st.dataframe(shared.select("row", "code", "train_code", "same_code", "kind", "text", "train_text"),
                     hide_index=True, width="stretch", height=260 if shared.height > 7 else "auto", column_config={
            "row": st.column_config.NumberColumn("Row", width="small"), "text": "Test description",
            "code": st.column_config.TextColumn("Code", width="small"), "train_text": "Training description",
            "train_code": st.column_config.TextColumn("Its code", width="small"), "kind": "Match",
            "same_code": st.column_config.CheckboxColumn("Same code", width="small")})

    column = data_checks.group_column(data.splits.test)
    if column is None:
        st.caption("The data has no register or source column: no accuracy per register.")
        return
    st.subheader(f"Accuracy per {column}")
    by_group = data_checks.accuracy_by_group(data.splits.test[column].cast(pl.String).to_list(),
                                             table["correct"].to_list(), table["in_top5"].to_list())
    st.dataframe(by_group.with_columns(pl.col("top1", "top5") * 100), hide_index=True, width="stretch", column_config={
        "group": column.capitalize(), "rows": "Test rows",
        "top1": st.column_config.ProgressColumn("Top-1", format="%.1f%%", min_value=0.0, max_value=100.0),
        "top5": st.column_config.ProgressColumn("Top-5", format="%.1f%%", min_value=0.0, max_value=100.0)})


# --- Map ----------------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Embedding the test rows (once per model and data)…", max_entries=4,
                   hash_funcs=caches.BY_FINGERPRINT)
def _test_map(classifier: Classifier, data: DataSet) -> embedding_map.Projection:
    return embedding_map.rows_map(classifier, data.splits.test, caches.default_workspace().settings.cache_dir)


@st.cache_resource(show_spinner="Embedding the training words (once per model and data)…", max_entries=4,
                   hash_funcs=caches.BY_FINGERPRINT)
def _word_space(classifier: Classifier, data: DataSet) -> embedding_map.WordSpace:
    return embedding_map.WordSpace.build(classifier, data.splits.train, caches.default_workspace().settings.cache_dir)


def map_traces(table: pl.DataFrame, colour_by: str) -> list[tuple[str, str, np.ndarray]]:
    """(name, colour, test rows) per trace: one per section, or right and wrong."""
    if colour_by == "section":
        groups = np.array(table["true_section"].to_list())
        return [(name, qualitative.Dark24[i % len(qualitative.Dark24)], np.flatnonzero(groups == name))
                for i, name in enumerate(sorted(set(groups.tolist())))]
    correct = table["correct"].to_numpy()
    return [("right", "#2166ac", np.flatnonzero(correct)), ("wrong", "#b35806", np.flatnonzero(~correct))]


def map_figure(projection: embedding_map.Projection, table: pl.DataFrame, colour_by: str) -> go.Figure:
    """The map; hover labels are plotly's pseudo-HTML, so the descriptions are escaped."""
    texts, true_codes, predicted = table["text"].to_list(), table["true_code"].to_list(), table["predicted_code"].to_list()
    figure = go.Figure()
    for name, colour, rows in map_traces(table, colour_by):
        figure.add_trace(go.Scattergl(
            x=projection.coordinates[rows, 0], y=projection.coordinates[rows, 1], mode="markers", name=name,
            marker={"size": 5, "color": colour, "opacity": 0.7},
            text=[f"#{i} {html.escape(texts[i][:80])}{'…' if len(texts[i]) > 80 else ''}<br>true {true_codes[i]} · predicted "
                  f"{predicted[i]}" for i in rows],
            hovertemplate="%{text}<extra></extra>"))
    variance = projection.explained_variance
    figure.update_xaxes(title=f"first principal axis ({variance[0]:.0%} of the variance)", zeroline=False)
    figure.update_yaxes(title=f"second ({variance[1]:.0%})", zeroline=False)
    figure.update_layout(title="Test rows as the model sees them (click a point)", height=560,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         legend={"itemsizing": "constant", "orientation": "h", "y": -0.15})
    return figure


def show_map(classifier: Classifier, data: DataSet, table: pl.DataFrame) -> None:
    try:
        projection = _test_map(classifier, data)
    except NaceAppError as exc:
        st.info(f"No map: {literal(str(exc))}")
        return
    st.caption("Each point is a test row, placed by the model's own sentence embedding (the vector its last layer "
               "reads), flattened to 2D with PCA: rows the model sees alike sit together. Kept on disk per model and "
               "data.")
    colour_by = st.radio("Colour by", ["section", "right or wrong"], key="map_colour", horizontal=True)
    chart_key = f"map_chart_{colour_by}"

    def pick_clicked_point() -> None:
        points = st.session_state[chart_key]["selection"]["points"]
        if points:
            rows = map_traces(table, colour_by)[points[0]["curve_number"]][2]
            st.session_state[MAP_ROW_KEY] = int(rows[points[0]["point_index"]])

    st.plotly_chart(map_figure(projection, table, colour_by), width="stretch", on_select=pick_clicked_point,
                    selection_mode="points", key=chart_key)
    row_id = int(st.columns([1, 2])[0].number_input("Test row (or click a point)", 0, table.height - 1, key=MAP_ROW_KEY))
    row = table.row(row_id, named=True)
    verdict = "right" if row["correct"] else "wrong"
    st.markdown(f"**Row #{row_id}** · true `{row['true_code']}` · predicted `{row['predicted_code']}` "
                f"({row['probability']:.1%}, {verdict})")
    explanation = caches.explanation(classifier, row["text"], row["predicted_code"])
    st.html(highlighted_text_html(row["text"], attributions.spans(explanation.words), row["predicted_code"]))
    st.button(f"Open row #{row_id} in the error browser", on_click=open_in_error_browser, args=(row_id,),
              icon=":material/open_in_new:", key="map_open_row")
    show_nearest_words(classifier, data)


def show_nearest_words(classifier: Classifier, data: DataSet) -> None:
    st.subheader("Nearest words")
    st.caption("Each word of the training texts, embedded by the model on its own: the words it places closest to "
               "the one you type (cosine), as in the notebook's picture of a word space.")
    word = st.text_input("A word", key="map_word", placeholder="e.g. bakery")
    if not word.strip():
        return
    try:
        nearest = _word_space(classifier, data).nearest(word, 10)
    except NaceAppError as exc:
        st.info(literal(str(exc)))
        return
    st.dataframe(pl.DataFrame(nearest, schema=["word", "similarity"], orient="row"), hide_index=True, width="stretch",
                 column_config={"word": "Word", "similarity": st.column_config.NumberColumn("Similarity",
                                                                                            format="%.3f")})
