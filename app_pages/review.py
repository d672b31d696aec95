"""Review: test-split figures at every NACE level, calibration, automation threshold, errors and their explanations."""

import numpy as np
import polars as pl
import streamlit as st

from nace_app import figures, metrics, review, ui
from nace_app.nomenclature import LEVELS
from nace_app.predict_view import contrast, word_triples

PAGE_SIZE = 25

current = ui.active()
classifier, data = current.classifier, current.data
nomenclature = classifier.nomenclature

st.title("Review the model on the test split")
st.caption(f"Model `{current.source.uri}` on the test split of `{data.source.uri}` (the reference notebook's split: "
           "70% train, 15% validation, 15% test, seed 42).")

test = data.splits.test
if test.height == 0:
    st.info("The test split is empty: there is nothing to review.")
    st.stop()
probabilities = ui.test_probabilities(classifier, classifier.fingerprint, data, data.fingerprint)
table = ui.review_table(classifier, classifier.fingerprint, data, data.fingerprint)
figures_now = review.headline(table, nomenclature)

safe, note = review.training_overlap_note(classifier.loaded.training, data.fingerprint)
(st.success if safe else st.warning)(note)
if figures_now.unknown_rows:
    st.warning(f"{figures_now.unknown_rows:,} test rows have codes the model does not know "
               f"({', '.join(figures_now.unknown_codes[:12])}{'…' if len(figures_now.unknown_codes) > 12 else ''}): "
               "they count as errors.")
if test["code"].n_unique() < 2:
    st.info("The test split holds a single class: accuracy is shown, but per-class and calibration figures say "
            "little.")

columns = st.columns(6)
columns[0].metric("Test rows", f"{figures_now.n_test:,}")
columns[1].metric("Top-1 accuracy", f"{figures_now.top1_accuracy:.1%}")
columns[2].metric("Top-5 accuracy", f"{figures_now.top5_accuracy:.1%}")
columns[3].metric("Macro-F1", f"{figures_now.macro_f1:.3f}")
columns[4].metric("Expected calibration error", f"{figures_now.ece:.3f}")
columns[5].metric("Classes in test", f"{test['code'].n_unique():,}")
level_columns = st.columns(4)
for column, level in zip(level_columns, LEVELS, strict=True):
    column.metric(f"Accuracy · {level}", f"{figures_now.accuracy_by_level[level]:.1%}")

def show_automation() -> None:
    score_name = st.radio("Automate on", list(review.SCORES), horizontal=True, key="automation_score")
    score = table[review.SCORES[score_name]].to_numpy()
    correct = table["correct"].to_numpy()
    threshold = st.session_state[ui.THRESHOLD_KEY]
    chosen = metrics.automation_at(score, correct, threshold)
    st.caption("Move the **automation threshold** in the sidebar: it is shared with the Predict page.")
    automation_columns = st.columns(4)
    automation_columns[0].metric("Coded automatically", f"{chosen['automated_share']:.1%}",
                                 help=f"{chosen['automated_count']:,} of {table.height:,} test rows")
    automation_columns[1].metric("Accuracy of automatic codes",
                                 "–" if np.isnan(chosen["automated_accuracy"]) else f"{chosen['automated_accuracy']:.1%}")
    automation_columns[2].metric("Confident errors slipping through", f"{chosen['confident_errors']:,}")
    automation_columns[3].metric("Left for manual review", f"{chosen['manual_count']:,}")
    st.plotly_chart(figures.automation_curve(metrics.automation_curve(score, correct), chosen),
                    width="stretch")


def show_calibration() -> None:
    confidence = table["probability"].to_numpy()
    correct = table["correct"].to_numpy()
    left, right = st.columns(2)
    left.plotly_chart(figures.reliability(metrics.reliability_table(confidence, correct)), width="stretch")
    right.plotly_chart(figures.confidence_histogram(confidence, correct), width="stretch")


def show_per_class() -> None:
    class_table = review.per_class(table, nomenclature)
    search_columns = st.columns([3, 1])
    query = search_columns[0].text_input("Search by code or heading words", key="class_search")
    sections = sorted(set(class_table["section"].to_list()))
    section = search_columns[1].selectbox("Section", [""] + sections, key="class_section",
                                          format_func=lambda s: s or "all sections")
    shown = review.search_classes(class_table, query, section)
    st.caption(f"{shown.height:,} of {class_table.height:,} classes · click a column header to sort")
    st.dataframe(shown, width="stretch", hide_index=True, height=420,
                 column_config={"precision": st.column_config.NumberColumn(format="%.2f"),
                                "recall": st.column_config.NumberColumn(format="%.2f"),
                                "f1": st.column_config.NumberColumn(format="%.2f")})


def show_confusions() -> None:
    pairs = review.with_headings(metrics.top_confusions(table["true_code"].to_list(),
                                                        table["predicted_code"].to_list()), nomenclature)
    st.subheader("Most frequent confusions")
    st.dataframe(pairs, width="stretch", hide_index=True)
    level = st.radio("Aggregate the matrix by", ["section", "division"], horizontal=True, key="matrix_level")
    labels, matrix = metrics.confusion_matrix(table["true_code"].to_list(), table["predicted_code"].to_list(),
                                              level, nomenclature)
    event = st.plotly_chart(figures.confusion_heatmap(labels, matrix, level), width="stretch",
                            on_select="rerun", selection_mode="points", key="matrix_chart")
    points = event.selection.points if event and event.selection else []
    if points:
        st.session_state.cell_true, st.session_state.cell_predicted = str(points[0]["y"]), str(points[0]["x"])
    cell_columns = st.columns(2)
    cell_true = cell_columns[0].selectbox("True", labels, key="cell_true")
    cell_predicted = cell_columns[1].selectbox("Predicted", labels, key="cell_predicted")
    examples = review.cell_examples(table, level, cell_true, cell_predicted, nomenclature)
    st.caption(f"{examples.height:,} test rows in cell ({cell_true} → {cell_predicted}); select a cell in the "
               "matrix or pick it here.")
    st.dataframe(examples.select("text", "true_code", "predicted_code", "probability").head(200),
                 width="stretch", hide_index=True)


def show_misclassifications() -> None:
    filter_columns = st.columns(3)
    true_code = filter_columns[0].text_input("True code starts with", key="filter_true")
    section = filter_columns[1].selectbox("True section", [""] + sorted(set(table["true_section"].to_list())),
                                          key="filter_section", format_func=lambda s: s or "all sections")
    predicted_code = filter_columns[2].text_input("Predicted code starts with", key="filter_predicted")
    filter_columns = st.columns(3)
    probability_range = filter_columns[0].slider("Top-1 probability", 0.0, 1.0, (0.0, 1.0), step=0.01,
                                                 key="filter_probability")
    outcome = filter_columns[1].radio("Show", ["incorrect", "correct", "all"], horizontal=True, key="filter_outcome")
    search = filter_columns[2].text_input("Text contains", key="filter_search")
    filtered = review.apply_filters(table, review.Filters(true_code, section, predicted_code, probability_range,
                                                          outcome, search))
    if filtered.height == 0:
        st.info("No test rows match these filters.")
    else:
        pages = (filtered.height - 1) // PAGE_SIZE + 1
        page_columns = st.columns([1, 3, 2])
        page = page_columns[0].number_input("Page", 1, pages, 1, key="filter_page")
        page_columns[1].caption(f"{filtered.height:,} rows · page {page} of {pages}")
        page_columns[2].download_button("Export filtered rows (CSV)",
                                        filtered.drop("top5").write_csv().encode("utf-8"), "review_rows.csv",
                                        mime="text/csv")
        window = filtered.slice((page - 1) * PAGE_SIZE, PAGE_SIZE)
        shown_columns = ["row", "text", "true_code", "predicted_code", "probability", "confidence_index", "correct"]
        selection = st.dataframe(window.select(shown_columns), width="stretch", hide_index=True,
                                 on_select="rerun", selection_mode="single-row", key=f"error_table_{page}")
        picked = selection.selection.rows if selection and selection.selection else []
        if picked:
            st.session_state.review_row = int(window["row"][picked[0]])
        st.selectbox("Explain row", window["row"].to_list(), key="review_row", index=None,
                     placeholder="select a row in the table or pick its number here",
                     format_func=lambda r: f"#{r} · {table['text'][r][:80]}")
        row_id = st.session_state.get("review_row")
        if row_id is not None:
            row = table.row(row_id, named=True)
            st.markdown(f"**Row #{row_id}** · true `{row['true_code']}` · predicted `{row['predicted_code']}` "
                        f"({row['probability']:.1%})")
            st.text(row["text"])
            top5 = pl.DataFrame({"code": row["top5"],
                                 "heading": [nomenclature.heading(c) for c in row["top5"]],
                                 "probability": [float(probabilities[row_id, classifier.label_index[c]])
                                                 for c in row["top5"]]})
            st.dataframe(top5, hide_index=True, width="stretch")
            predicted, true = row["predicted_code"], row["true_code"]
            left, right = st.columns(2)
            predicted_explanation = ui.explanation(classifier, classifier.fingerprint, row["text"], predicted)
            with left:
                st.markdown(f"**Predicted `{predicted}`** · {nomenclature.heading(predicted)}")
                st.html(ui.highlighted_text_html(row["text"], word_triples(predicted_explanation.words), predicted))
            with right:
                st.markdown(f"**True `{true}`** · {nomenclature.heading(true)}")
                if true in classifier.label_index:
                    true_explanation = ui.explanation(classifier, classifier.fingerprint, row["text"], true)
                    st.html(ui.highlighted_text_html(row["text"], word_triples(true_explanation.words), true))
                else:
                    st.warning("The model does not know this code: there is nothing to explain.")
            if true in classifier.label_index and true != predicted:
                st.markdown(f"**Why `{predicted}` rather than `{true}`**")
                st.html(ui.highlighted_text_html(row["text"], contrast(predicted_explanation, true_explanation),
                                                 f"{predicted} over {true}"))


views = st.tabs(["Automation", "Calibration", "Per class", "Confusions", "Misclassifications"], key="review_view",
                on_change="rerun")  # only the open tab is computed
for view, show in zip(views, (show_automation, show_calibration, show_per_class, show_confusions,
                              show_misclassifications), strict=True):
    with view:
        if view.open:
            show()
