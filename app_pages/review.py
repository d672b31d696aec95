"""Review: test-split figures at every NACE level, calibration, automation rules, prediction sets, errors with their
explanations and similar examples, and reviewers' corrections."""

import polars as pl
import streamlit as st

from nace_app.app import caches, comparisons, figures, picker, review_tools, state, widgets
from nace_app.coding import batch
from nace_app.explain import attributions
from nace_app.explain.highlight import highlighted_text_html
from nace_app.nomenclature.structure import LEVELS
from nace_app.review import calibration, metrics, tables
from nace_app.settings.errors import NaceAppError

current = picker.active()
classifier, data = current.classifier, current.data
nomenclature = classifier.nomenclature
score_name, threshold = state.automation_rule()

st.title("Review the model on the test split")
st.caption(f"Model `{current.source.shown_uri}` on the test split of `{data.source.shown_uri}` (the reference notebook's split: "
           "70% train, 15% validation, 15% test, seed 42).")

test = data.splits.test
if test.height == 0:
    st.info("The test split is empty: there is nothing to review.")
    st.stop()
probabilities = caches.test_probabilities(classifier, data)
table = caches.review_table(classifier, data)
evaluation = caches.test_evaluation(classifier, data)

safe, note = tables.training_overlap_note(classifier.loaded.training, data.fingerprint)
(st.success if safe else st.warning)(note)
if evaluation.unknown_rows:
    st.warning(f"{evaluation.unknown_rows:,} test rows have codes the model does not know "
               f"({', '.join(evaluation.unknown_codes[:12])}{'…' if len(evaluation.unknown_codes) > 12 else ''}): "
               "they count as errors.")
if evaluation.classes < 2:
    st.info("The test split holds a single class: accuracy is shown, but per-class and calibration figures say "
            "little.")

headline = st.columns(3)
headline[0].metric("Test rows", f"{evaluation.n:,}")
headline[1].metric("Top-1 accuracy", f"{evaluation.top1_accuracy:.1%}")
headline[2].metric("Top-5 accuracy", f"{evaluation.top5_accuracy:.1%}")
headline = st.columns(3)
headline[0].metric("Macro-F1", f"{evaluation.macro_f1:.3f}")
headline[1].metric("Calibration error", f"{evaluation.ece:.3f}", help="Expected calibration error (15 bins).")
headline[2].metric("Classes in test", f"{evaluation.classes:,}",
                   help=f"Distinct codes in the test split; the model knows {classifier.num_classes:,} classes.")
st.caption("Accuracy at every NACE level (both codes cut to the level)")
level_columns = st.columns(4)
for column, level in zip(level_columns, LEVELS, strict=True):
    column.metric(level.capitalize(), f"{evaluation.accuracy_by_level[level]:.1%}")


def show_automation() -> None:
    score = tables.automation_score(table, score_name)
    correct = table["correct"].to_numpy()
    chosen = metrics.automation_at(score, correct, threshold)
    st.caption(f"Automatic when the **{score_name}** reaches **{threshold:.2f}**: change both in the sidebar; the "
               "Predict page uses the same rule.")
    show_automation_cards(chosen, table.height)
    st.plotly_chart(figures.automation_curve(metrics.automation_curve(score, correct), chosen), width="stretch")
    st.markdown(f"**Or automate the descriptions whose {state.coverage_level():.0%} prediction set holds one code** "
                "(coverage in the sidebar)")
    report = coverage_or_reason()
    if report is None:
        return
    st.caption(f"On the {report.rows:,} test rows (the sets are calibrated on shifted text, none of these rows).")
    show_automation_cards(tables.set_of_one_automation(report), report.rows)
    st.markdown("**Both rules on descriptions written apart from the training data** (the shifted text's report part: "
                "what the Predict page quotes)")
    for record in caches.rule_records(classifier, state.coding_rule(), score_name, threshold, state.coverage_level()):
        st.markdown(f"- The rule ({record.description}) {record.measured}.")


def show_automation_cards(chosen: dict[str, float], rows: int) -> None:
    automation_columns = st.columns(4)
    automation_columns[0].metric("Coded automatically", f"{chosen['automated_share']:.1%}",
                                 help=f"{chosen['automated_count']:,} of {rows:,} test rows")
    automation_columns[1].metric("Accuracy of automatic codes",
                                 "–" if chosen["automated_count"] == 0 else f"{chosen['automated_accuracy']:.1%}")
    automation_columns[2].metric("Confident errors let through", f"{chosen['confident_errors']:,}")
    automation_columns[3].metric("Left for manual review", f"{chosen['manual_count']:,}")


def coverage_or_reason():
    """The prediction sets' report at the sidebar's level, or None once the page has said why there is none."""
    try:
        return caches.coverage_report(classifier, data, state.coverage_level())
    except NaceAppError as exc:
        st.info(widgets.literal(str(exc)))
        return None


def show_prediction_sets() -> None:
    report = coverage_or_reason()
    if report is None:
        return
    show_held_out_side_by_side()
    st.caption(f"Method: {report.method} (split conformal prediction). Change the level in the sidebar. The figures "
               "below are on the test split.")
    columns = st.columns(4)
    columns[0].metric("Coverage asked for", f"{report.level:.0%}")
    columns[1].metric("Coverage on the test rows", f"{report.coverage:.1%}",
                      help=f"Share of {report.rows:,} held-out test rows whose true code is in their set. The "
                           "guarantee is on average over texts like the calibration rows.")
    columns[2].metric("Mean set size", f"{report.mean_set_size:.1f} codes", help=f"median {report.median_set_size:.0f}")
    columns[3].metric("Sets of one code", f"{report.singleton_share:.1%}",
                      help=f"their accuracy: {report.singleton_accuracy:.1%}")
    if report.unknown_rows:
        st.caption(f"{report.unknown_rows:,} rows have codes the model does not know: no set can hold them, they are "
                   "left out.")
    st.plotly_chart(figures.set_sizes(report.set_sizes, report.level), width="stretch")
    st.markdown("**By section**")
    st.dataframe(report.by_group, hide_index=True, width="stretch", column_config={
        "group": "Section", "rows": "Test rows",
        "coverage": st.column_config.NumberColumn("Coverage", format="%.3f"),
        "mean_set_size": st.column_config.NumberColumn("Mean set size", format="%.1f"),
        "singleton_share": st.column_config.NumberColumn("Sets of one", format="%.2f")})


def show_held_out_side_by_side() -> None:
    """What the guarantee covers: the sets and the top-1 calibration on the test split and on the shifted text."""
    fitted = caches.model_calibration(classifier)
    st.caption(f"Calibrated on {widgets.literal(fitted.fitted_on)}: temperature {fitted.temperature:.2f}, "
               f"{fitted.rows:,} conformal scores. The {state.coverage_level():.0%} guarantee is "
               f"{calibration.GUARANTEE_COVERS}; the test split is written by the training data's writers.")
    try:
        side_by_side = caches.held_out_figures(classifier, data, state.coverage_level())
    except NaceAppError as exc:
        st.info(widgets.literal(str(exc)))
        return
    st.dataframe(calibration.figures_table(side_by_side), hide_index=True, width="stretch")


def show_calibration() -> None:
    show_held_out_side_by_side()
    correct = table["correct"].to_numpy()
    st.plotly_chart(figures.reliability(metrics.reliability_table(table["probability"].to_numpy(), correct)),
                    width="stretch")
    st.plotly_chart(figures.confidence_histogram(tables.automation_score(table, score_name), correct, threshold,
                                                 score_name), width="stretch")


def show_per_class() -> None:
    class_table = tables.with_rev2(tables.per_class(table, nomenclature), {"code": "rev2_codes"})
    search_columns = st.columns([3, 1])
    with search_columns[0]:
        query = state.kept(st.text_input, "Search by code, heading or description words", key="class_search", default="")
    sections = sorted(set(class_table["section"].to_list()))
    with search_columns[1]:
        section = state.kept(st.selectbox, "Section", [""] + sections, key="class_section", default="",
                          format_func=lambda s: s or "all sections")
    shown = tables.search_classes(class_table, query, section, table)
    st.caption(f"{shown.height:,} of {class_table.height:,} classes (in the test split or predicted) · click a column "
               "header to sort · precision None: never predicted")
    event = st.dataframe(shown, width="stretch", hide_index=True, height=420, on_select="rerun",
                         selection_mode="single-row", key=f"class_table_{hash((query, section))}",
                         column_order=("code", "support", "precision", "recall", "f1", "most_confused_with",
                                       "confused_count", "heading", "rev2_codes", "section"), column_config={
        "code": st.column_config.TextColumn("Code", width="small"),
        "heading": st.column_config.TextColumn("Heading", width="large"), "section": "Section",
        "rev2_codes": "Rev 2 classes", "support": st.column_config.NumberColumn("Test rows", width="small"),
        "precision": st.column_config.NumberColumn("Precision", format="%.2f"),
        "recall": st.column_config.NumberColumn("Recall", format="%.2f"),
        "f1": st.column_config.NumberColumn("F1", format="%.2f"),
        "most_confused_with": "Most confused with", "confused_count": st.column_config.NumberColumn("Times",
                                                                                                 width="small")})
    picked = event.selection.rows if event and event.selection else []
    if picked:
        st.session_state.words_class = shown["code"][picked[0]]
    show_class_words(st.session_state.get("words_class"))


def show_class_words(code: str | None) -> None:
    words = caches.class_words_table(classifier, data)
    if words is None:
        st.caption("Click a class to see the words that drive it and the words that pull its rows to a wrong code. "
                   f"This explains all {test.height:,} test rows once (integrated gradients), then is kept on disk.")
        if st.button("Compute the words of every class", icon=":material/insights:"):
            bar = st.progress(0.0, text="Explaining the test rows…")
            caches.compute_class_words(classifier, data, lambda done, total: bar.progress(
                done / total, text=f"Explained {done:,} of {total:,} test rows"))
            st.rerun()
        return
    if code is None:
        st.caption("Click a class in the table to see the words that drive it.")
        return
    toward, away = tables.words_of_class(words, code)
    st.markdown(f"**Words of `{code}`** · {widgets.literal(nomenclature.heading(code))}")
    columns = st.columns(2)
    with columns[0]:
        st.caption("Words that drive it (mean attribution over its test rows)")
        st.dataframe(toward, hide_index=True, width="stretch", column_config={
            "rank": None, "word": "Word", "rows": "Rows with it",
            "mean_score": st.column_config.NumberColumn("Mean score", format="%+.3f")})
    with columns[1]:
        st.caption("Words that pull its rows to a wrong code (in its misclassified rows)")
        if away.height == 0:
            st.caption("None: its test rows are all coded right.")
        else:
            st.dataframe(away, hide_index=True, width="stretch", column_config={
                "rank": None, "word": "Word", "wrong_code": "Toward", "rows": "Rows",
                "mean_score": st.column_config.NumberColumn("Mean pull", format="%+.3f")})


def show_confusions() -> None:
    pairs = tables.with_headings(metrics.top_confusions(table["true_code"].to_list(),
                                                        table["predicted_code"].to_list()), nomenclature)
    st.subheader("Most frequent confusions")
    st.dataframe(pairs, width="stretch", hide_index=True,
                 column_order=("true_code", "predicted_code", "count", "true_heading", "predicted_heading"),
                 column_config={"true_code": widgets.code_column("True"), "true_heading": widgets.heading_column("True heading"),
                                "predicted_code": widgets.code_column("Predicted"),
                                "predicted_heading": widgets.heading_column("Predicted heading"),
                                "count": st.column_config.NumberColumn("Rows", width="small")})
    level = state.kept(st.radio, "Aggregate the matrix by", ["section", "division"], key="matrix_level",
                    default="section", horizontal=True)
    labels, matrix = metrics.confusion_matrix(table["true_code"].to_list(), table["predicted_code"].to_list(),
                                              level, nomenclature)
    largest = tables.largest_confusion(labels, matrix)
    if largest is None:
        st.info("No confusions at this level.")
        return
    event = st.plotly_chart(figures.confusion_cells(labels, matrix, level), width="stretch",
                            on_select="rerun", selection_mode="points", key=f"matrix_chart_{level}")
    points = event.selection.points if event and event.selection else []
    cell = (str(points[0]["y"]), str(points[0]["x"])) if points else st.session_state.get(f"cell_{level}", largest)
    st.session_state[f"cell_{level}"] = cell
    examples = tables.cell_examples(table, level, cell[0], cell[1], nomenclature)
    st.markdown(f"**{examples.height:,} test rows** true `{cell[0]}` → predicted `{cell[1]}` "
                f"({widgets.literal(nomenclature.heading(cell[0]))} → {widgets.literal(nomenclature.heading(cell[1]))})")
    st.dataframe(examples.select("text", "true_code", "predicted_code", "probability").head(200),
                 width="stretch", hide_index=True,
                 column_order=("true_code", "predicted_code", "probability", "text"), column_config={
                     "text": "Description", "true_code": widgets.code_column("True"), "predicted_code": widgets.code_column("Predicted"),
                     "probability": st.column_config.NumberColumn("Top-1", format="%.2f", width="small")})


def show_misclassifications() -> None:
    filter_columns = st.columns(3)
    with filter_columns[0]:
        true_code = state.kept(st.text_input, "True code starts with", key="filter_true", default="")
    with filter_columns[1]:
        section = state.kept(st.selectbox, "True section", [""] + sorted(set(table["true_section"].to_list())),
                          key="filter_section", default="", format_func=lambda s: s or "all sections")
    with filter_columns[2]:
        predicted_code = state.kept(st.text_input, "Predicted code starts with", key="filter_predicted", default="")
    filter_columns = st.columns(3)
    with filter_columns[0]:
        probability_range = state.kept(st.slider, "Top-1 probability", 0.0, 1.0, key="filter_probability",
                                    default=(0.0, 1.0), step=0.01)
    with filter_columns[1]:
        outcome = state.kept(st.radio, "Show", ["incorrect", "correct", "all"], key="filter_outcome",
                          default="incorrect", horizontal=True)
    with filter_columns[2]:
        search = state.kept(st.text_input, "Text contains", key="filter_search", default="")
    filters = tables.Filters(true_code, section, predicted_code, tuple(probability_range), outcome, search)
    filtered = tables.apply_filters(table, filters)
    if filtered.height == 0:
        st.info("No test rows match these filters.")
        return
    pages = tables.page_count(filtered)
    page_columns = st.columns([1, 2, 2], vertical_alignment="bottom")
    page = page_columns[0].number_input("Page", 1, pages, 1, key=f"filter_page_{hash(filters)}")
    page_columns[1].caption(f"{filtered.height:,} rows · page {page} of {pages}")
    exported = tables.export_rows(filtered, batch.DECIMALS)
    with page_columns[2].popover("Export filtered rows", icon=":material/download:", width="stretch"):
        st.download_button("Excel (.xlsx)", batch.to_xlsx_bytes(exported), "review_rows.xlsx", width="stretch",
                           mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        st.download_button("CSV", batch.to_csv_bytes(exported), "review_rows.csv", mime="text/csv", width="stretch")
    window = tables.page_of(filtered, page)
    shown = tables.with_rev2(window, {"true_code": "true_rev2", "predicted_code": "predicted_rev2"}).select(
        "row", "text", "true_code", "true_rev2", "true_heading", "predicted_code", "predicted_rev2", "predicted_heading",
        "probability")
    table_key = f"error_table_{hash(filters)}_{page}"  # a new table when filters change: no stale positions
    st.session_state.review_window = window["row"].to_list()

    def pick_clicked_row() -> None:
        rows = st.session_state[table_key]["selection"]["rows"]
        if rows:
            st.session_state.review_row = st.session_state.review_window[rows[0]]

    st.dataframe(shown, width="stretch", hide_index=True, on_select=pick_clicked_row, selection_mode="single-row",
                 key=table_key, column_order=("row", "true_code", "predicted_code", "probability", "text",
                                              "true_rev2", "predicted_rev2", "true_heading", "predicted_heading"),
                 column_config={
                     "row": st.column_config.NumberColumn("Row", width="small"),
                     "text": st.column_config.TextColumn("Description", width="large"),
                     "true_code": widgets.code_column("True"), "true_heading": widgets.heading_column("True heading"),
                     "predicted_code": widgets.code_column("Predicted"),
                     "predicted_heading": widgets.heading_column("Predicted heading"),
                     "true_rev2": "True (Rev 2)", "predicted_rev2": "Predicted (Rev 2)",
                     "probability": st.column_config.NumberColumn("Top-1", format="%.2f", width="small")})
    rows_here = st.session_state.review_window
    chosen = st.session_state.get("review_row")  # a row identity: it survives filter and page changes
    if chosen is None:
        chosen = st.session_state.review_row = rows_here[0]
    choices = rows_here if chosen in rows_here else [chosen, *rows_here]
    row_id = state.kept(st.selectbox, "Explain row (or click a row in the table)", choices, key="review_row",
                     format_func=lambda r: f"#{r} · {table['text'][r][:80]}")
    row = table.row(row_id, named=True)
    st.markdown(f"**Row #{row_id}** · true `{row['true_code']}` · predicted `{row['predicted_code']}` "
                f"({row['probability']:.1%})")
    st.text(row["text"])
    st.dataframe(tables.row_candidates(row, probabilities, classifier.label_index, nomenclature), hide_index=True,
                 width="stretch", column_config={"rank": "Rank", "code": "Code", "heading": "Heading",
                                                 "probability": st.column_config.NumberColumn("Probability",
                                                                                              format="%.3f")})
    predicted, true = row["predicted_code"], row["true_code"]
    predicted_explanation = caches.explanation(classifier, row["text"], predicted)
    st.markdown(f"**Predicted `{predicted}`** · {nomenclature.heading(predicted)}")
    st.html(highlighted_text_html(row["text"], attributions.spans(predicted_explanation.words), predicted))
    st.markdown(f"**True `{true}`** · {nomenclature.heading(true)}")
    if true not in classifier.label_index:
        st.warning("The model does not know this code: there is nothing to explain.")
        return
    true_explanation = caches.explanation(classifier, row["text"], true)
    st.html(highlighted_text_html(row["text"], attributions.spans(true_explanation.words), true))
    if true != predicted:
        st.markdown(f"**Why `{predicted}` rather than `{true}`**")
        st.html(highlighted_text_html(row["text"], attributions.contrast(predicted_explanation, true_explanation),
                                      f"{predicted} over {true}"))
    show_similar_and_correction(row)


def show_similar_and_correction(row: dict) -> None:
    st.markdown("**Similar training rows**")
    widgets.similar_examples_table(classifier, data, row["text"])
    widgets.correction_form(row["text"], row["predicted_code"], classifier, default_code=row["true_code"],
                       key=f"review_{row['row']}")


def show_corrections() -> None:
    try:
        store = caches.correction_store()
    except NaceAppError as exc:
        st.error(widgets.literal(str(exc)))
        return
    st.caption("Codes confirmed or corrected by reviewers on this server (Predict page and the error browser), kept "
               f"in `{store.path}`. The Train page can add them to the training rows.")
    search, code_start = st.columns(2)
    words = state.kept(search.text_input, "Text or comment contains", key="corrections_search", default="")
    code = state.kept(code_start.text_input, "Code starts with", key="corrections_code", default="")
    try:
        corrections = store.table(words, code)
    except NaceAppError as exc:
        st.error(widgets.literal(str(exc)))
        return
    if store.damage_notice():
        st.warning(widgets.literal(store.damage_notice()), icon=":material/healing:")
    if corrections.height == 0:
        st.info("No corrections yet: confirm or correct a code on the Predict page or under **Errors**."
                if not (words or code) else "No corrections match these filters.")
        return
    st.dataframe(corrections, hide_index=True, width="stretch",
                 column_order=("id", "proposed_code", "corrected_code", "text", "comment", "created_at", "model_name"),
                 column_config={
                     "id": st.column_config.NumberColumn("#", width="small"),
                     "created_at": st.column_config.DatetimeColumn("When (UTC)", format="D MMM YYYY, HH:mm"),
                     "text": st.column_config.TextColumn("Description", width="large"),
                     "proposed_code": widgets.code_column("Model's code"),
                     "corrected_code": widgets.code_column("Right code"), "model_name": "Model",
                     "comment": st.column_config.TextColumn("Comment", width="medium")})
    actions = st.columns([2, 1, 2], vertical_alignment="bottom")
    actions[0].download_button("Download all corrections (CSV)", store.to_csv_bytes(), "corrections.csv",
                               mime="text/csv", width="stretch")
    undo_id = actions[1].selectbox("Correction", corrections["id"].to_list(), key="undo_id",
                                   format_func=lambda i: f"#{i}")
    if actions[2].button("Undo this correction", icon=":material/undo:", width="stretch"):
        st.session_state.undo_asked = int(undo_id)
    if st.session_state.get("undo_asked") == undo_id:
        confirm_undo(store, corrections.row(by_predicate=pl.col("id") == undo_id, named=True))


def confirm_undo(store, correction: dict) -> None:
    """Undo deletes a reviewer's work: it says what goes, and waits for a second click."""
    shown = correction["text"][:80] + ("…" if len(correction["text"]) > 80 else "")
    st.warning(f"Undo correction #{correction['id']} ({correction['proposed_code']} → {correction['corrected_code']}, "
               f"“{widgets.literal(shown)}”)? It is deleted for good.", icon=":material/warning:")
    answers = st.columns([1, 1, 3])
    if answers[0].button("Yes, undo it", type="primary", width="stretch"):
        st.session_state.undo_asked = None
        try:
            store.undo(correction["id"])
        except NaceAppError as exc:
            st.error(widgets.literal(str(exc)))
        else:
            st.rerun()
    if answers[1].button("Keep it", width="stretch"):
        st.session_state.undo_asked = None
        st.rerun()


views = st.tabs(["Automation", "Prediction sets", "Calibration", "Per class", "Confusions", "Errors", "Corrections",
                "Robustness", "Data", "Map", "Two models"],
               key="review_view", on_change="rerun")  # only the open tab is computed
for view, show in zip(views, (show_automation, show_prediction_sets, show_calibration, show_per_class,
                              show_confusions, show_misclassifications, show_corrections,
                              lambda: review_tools.show_robustness(classifier, data),
                              lambda: review_tools.show_data(data, table),
                              lambda: review_tools.show_map(classifier, data, table),
                              lambda: comparisons.two_models_on_test(classifier, data, score_name, threshold)),
                      strict=True):
    with view:
        if view.open:
            show()
