"""Review: test-split figures at every NACE level, calibration, automation threshold, errors and their explanations."""

import html

import streamlit as st

from nace_app import explain, figures, metrics, review, ui
from nace_app.highlight import highlighted_text_html
from nace_app.nomenclature import LEVELS

current = ui.active()
classifier, data = current.classifier, current.data
nomenclature = classifier.nomenclature
score_name, threshold = ui.automation_rule()

st.title("Review the model on the test split")
st.caption(f"Model `{current.source.shown_uri}` on the test split of `{data.source.shown_uri}` (the reference notebook's split: "
           "70% train, 15% validation, 15% test, seed 42).")

test = data.splits.test
if test.height == 0:
    st.info("The test split is empty: there is nothing to review.")
    st.stop()
probabilities = ui.test_probabilities(classifier, data)
table = ui.review_table(classifier, data)
evaluation = ui.test_evaluation(classifier, data)

safe, note = review.training_overlap_note(classifier.loaded.training, data.fingerprint)
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
    score = review.automation_score(table, score_name)
    correct = table["correct"].to_numpy()
    chosen = metrics.automation_at(score, correct, threshold)
    st.caption(f"Automatic when the **{score_name}** reaches **{threshold:.2f}**: change both in the sidebar; the "
               "Predict page uses the same rule.")
    automation_columns = st.columns(2)
    automation_columns[0].metric("Coded automatically", f"{chosen['automated_share']:.1%}",
                                 help=f"{chosen['automated_count']:,} of {table.height:,} test rows")
    automation_columns[1].metric("Accuracy of automatic codes",
                                 "–" if chosen["automated_count"] == 0 else f"{chosen['automated_accuracy']:.1%}")
    automation_columns = st.columns(2)
    automation_columns[0].metric("Confident errors let through", f"{chosen['confident_errors']:,}")
    automation_columns[1].metric("Left for manual review", f"{chosen['manual_count']:,}")
    st.plotly_chart(figures.automation_curve(metrics.automation_curve(score, correct), chosen), width="stretch")


def show_calibration() -> None:
    correct = table["correct"].to_numpy()
    st.plotly_chart(figures.reliability(metrics.reliability_table(table["probability"].to_numpy(), correct)),
                    width="stretch")
    st.plotly_chart(figures.confidence_histogram(review.automation_score(table, score_name), correct, threshold,
                                                 score_name), width="stretch")


def show_per_class() -> None:
    class_table = review.per_class(table, nomenclature)
    search_columns = st.columns([3, 1])
    with search_columns[0]:
        query = ui.kept(st.text_input, "Search by code, heading or description words", key="class_search", default="")
    sections = sorted(set(class_table["section"].to_list()))
    with search_columns[1]:
        section = ui.kept(st.selectbox, "Section", [""] + sections, key="class_section", default="",
                          format_func=lambda s: s or "all sections")
    shown = review.search_classes(class_table, query, section, table)
    st.caption(f"{shown.height:,} of {class_table.height:,} classes (in the test split or predicted) · click a column "
               "header to sort · empty precision: never predicted")
    st.dataframe(shown, width="stretch", hide_index=True, height=420, column_config={
        "code": "Code", "heading": "Heading", "section": "Section", "support": "Test rows",
        "precision": st.column_config.NumberColumn("Precision", format="%.2f"),
        "recall": st.column_config.NumberColumn("Recall", format="%.2f"),
        "f1": st.column_config.NumberColumn("F1", format="%.2f"),
        "most_confused_with": "Most confused with", "confused_count": "Times"})


def show_confusions() -> None:
    pairs = review.with_headings(metrics.top_confusions(table["true_code"].to_list(),
                                                        table["predicted_code"].to_list()), nomenclature)
    st.subheader("Most frequent confusions")
    st.dataframe(pairs, width="stretch", hide_index=True, column_config={
        "true_code": "True", "true_heading": "True heading", "predicted_code": "Predicted",
        "predicted_heading": "Predicted heading", "count": st.column_config.NumberColumn("Rows", width="small")})
    level = ui.kept(st.radio, "Aggregate the matrix by", ["section", "division"], key="matrix_level",
                    default="section", horizontal=True)
    labels, matrix = metrics.confusion_matrix(table["true_code"].to_list(), table["predicted_code"].to_list(),
                                              level, nomenclature)
    largest = review.largest_confusion(labels, matrix)
    if largest is None:
        st.info("No confusions at this level.")
        return
    event = st.plotly_chart(figures.confusion_cells(labels, matrix, level), width="stretch",
                            on_select="rerun", selection_mode="points", key=f"matrix_chart_{level}")
    points = event.selection.points if event and event.selection else []
    cell = (str(points[0]["y"]), str(points[0]["x"])) if points else st.session_state.get(f"cell_{level}", largest)
    st.session_state[f"cell_{level}"] = cell
    examples = review.cell_examples(table, level, cell[0], cell[1], nomenclature)
    st.markdown(f"**{examples.height:,} test rows** true `{cell[0]}` → predicted `{cell[1]}` "
                f"({html.escape(nomenclature.heading(cell[0]))} → {html.escape(nomenclature.heading(cell[1]))})")
    st.dataframe(examples.select("text", "true_code", "predicted_code", "probability").head(200),
                 width="stretch", hide_index=True, column_config={
                     "text": "Description", "true_code": "True", "predicted_code": "Predicted",
                     "probability": st.column_config.NumberColumn("Top-1 probability", format="%.2f")})


def show_misclassifications() -> None:
    filter_columns = st.columns(3)
    with filter_columns[0]:
        true_code = ui.kept(st.text_input, "True code starts with", key="filter_true", default="")
    with filter_columns[1]:
        section = ui.kept(st.selectbox, "True section", [""] + sorted(set(table["true_section"].to_list())),
                          key="filter_section", default="", format_func=lambda s: s or "all sections")
    with filter_columns[2]:
        predicted_code = ui.kept(st.text_input, "Predicted code starts with", key="filter_predicted", default="")
    filter_columns = st.columns(3)
    with filter_columns[0]:
        probability_range = ui.kept(st.slider, "Top-1 probability", 0.0, 1.0, key="filter_probability",
                                    default=(0.0, 1.0), step=0.01)
    with filter_columns[1]:
        outcome = ui.kept(st.radio, "Show", ["incorrect", "correct", "all"], key="filter_outcome",
                          default="incorrect", horizontal=True)
    with filter_columns[2]:
        search = ui.kept(st.text_input, "Text contains", key="filter_search", default="")
    filters = review.Filters(true_code, section, predicted_code, tuple(probability_range), outcome, search)
    filtered = review.apply_filters(table, filters)
    if filtered.height == 0:
        st.info("No test rows match these filters.")
        return
    pages = review.page_count(filtered)
    page_columns = st.columns([1, 2, 2], vertical_alignment="bottom")
    page = page_columns[0].number_input("Page", 1, pages, 1, key=f"filter_page_{hash(filters)}")
    page_columns[1].caption(f"{filtered.height:,} rows · page {page} of {pages}")
    page_columns[2].download_button("Export filtered rows", filtered.drop("top5").write_csv().encode("utf-8"),
                                    "review_rows.csv", mime="text/csv", width="stretch")
    window = review.page_of(filtered, page)
    shown = window.select("row", "text", "true_code", "true_heading", "predicted_code", "predicted_heading",
                          "probability")
    table_key = f"error_table_{hash(filters)}_{page}"  # a new table when filters change: no stale positions
    st.session_state.review_window = window["row"].to_list()

    def pick_clicked_row() -> None:
        rows = st.session_state[table_key]["selection"]["rows"]
        if rows:
            st.session_state.review_row = st.session_state.review_window[rows[0]]

    st.dataframe(shown, width="stretch", hide_index=True, on_select=pick_clicked_row, selection_mode="single-row",
                 key=table_key, column_config={
                     "row": st.column_config.NumberColumn("Row", width="small"), "text": "Description",
                     "true_code": "True", "true_heading": "True heading", "predicted_code": "Predicted",
                     "predicted_heading": "Predicted heading",
                     "probability": st.column_config.NumberColumn("Top-1", format="%.2f")})
    rows_here = st.session_state.review_window
    chosen = st.session_state.get("review_row")  # a row identity: it survives filter and page changes
    if chosen is None:
        chosen = st.session_state.review_row = rows_here[0]
    choices = rows_here if chosen in rows_here else [chosen, *rows_here]
    row_id = ui.kept(st.selectbox, "Explain row (or click a row in the table)", choices, key="review_row",
                     format_func=lambda r: f"#{r} · {table['text'][r][:80]}")
    row = table.row(row_id, named=True)
    st.markdown(f"**Row #{row_id}** · true `{row['true_code']}` · predicted `{row['predicted_code']}` "
                f"({row['probability']:.1%})")
    st.text(row["text"])
    st.dataframe(review.row_candidates(row, probabilities, classifier.label_index, nomenclature), hide_index=True,
                 width="stretch", column_config={"rank": "Rank", "code": "Code", "heading": "Heading",
                                                 "probability": st.column_config.NumberColumn("Probability",
                                                                                              format="%.3f")})
    predicted, true = row["predicted_code"], row["true_code"]
    predicted_explanation = ui.explanation(classifier, row["text"], predicted)
    st.markdown(f"**Predicted `{predicted}`** · {nomenclature.heading(predicted)}")
    st.html(highlighted_text_html(row["text"], explain.spans(predicted_explanation.words), predicted))
    st.markdown(f"**True `{true}`** · {nomenclature.heading(true)}")
    if true not in classifier.label_index:
        st.warning("The model does not know this code: there is nothing to explain.")
        return
    true_explanation = ui.explanation(classifier, row["text"], true)
    st.html(highlighted_text_html(row["text"], explain.spans(true_explanation.words), true))
    if true != predicted:
        st.markdown(f"**Why `{predicted}` rather than `{true}`**")
        st.html(highlighted_text_html(row["text"], explain.contrast(predicted_explanation, true_explanation),
                                      f"{predicted} over {true}"))


views = st.tabs(["Automation", "Calibration", "Per class", "Confusions", "Errors"], key="review_view",
                on_change="rerun")  # only the open tab is computed
for view, show in zip(views, (show_automation, show_calibration, show_per_class, show_confusions,
                              show_misclassifications), strict=True):
    with view:
        if view.open:
            show()
