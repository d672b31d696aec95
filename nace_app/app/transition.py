"""The NACE Rev 2 -> Rev 2.1 transition on the Predict page: the follow-up question's chips, relabelling a file."""

from __future__ import annotations

import streamlit as st

from nace_app.app import caches
from nace_app.app.widgets import literal
from nace_app.coding import batch, follow_up, relabel
from nace_app.model.classifier import Classifier
from nace_app.nomenclature.correspondence import load_correspondence
from nace_app.settings.errors import NaceAppError

ANSWER_KEY = "follow_up_answer"
MAX_RELABEL_ROWS = 50_000  # the page's bound; the command line streams files of any length


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=caches.BY_FINGERPRINT)
def set_question(classifier: Classifier, text: str, level: float) -> tuple[list[str], list[float], follow_up.FollowUp | None]:
    """The prediction set's codes, their probabilities, and the question that splits them (None for one code)."""
    codes = caches.prediction_set(classifier, text, level)
    probabilities = classifier.predict_proba([text])[0]
    set_probabilities = [float(probabilities[classifier.label_index[c]]) for c in codes]
    return codes, set_probabilities, follow_up.follow_up(classifier.nomenclature, codes, set_probabilities)


def link_value() -> str | None:
    """The answer the shared link records, as "kind:answer" (None when none was picked)."""
    return st.session_state.get(ANSWER_KEY)


def follow_up_chips(classifier: Classifier, text: str, level: float) -> None:
    """Under the candidates: one closed question when the set holds 2+ codes; a chip keeps its codes, re-ranked."""
    try:
        codes, probabilities, question = set_question(classifier, text, level)
    except NaceAppError:  # no prediction set: the candidates card already says why
        return
    if question is None:
        st.session_state.pop(ANSWER_KEY, None)
        return
    options = {f"{question.kind}:{answer.key}": answer for answer in question.answers}
    if st.session_state.get(ANSWER_KEY) not in options:
        st.session_state[ANSWER_KEY] = None
    st.markdown(f"**One question to narrow the {len(codes)} codes:** {question.question}")
    picked = st.pills("Answer", list(options), key=ANSWER_KEY, format_func=lambda o: options[o].answer,
                      selection_mode="single", label_visibility="collapsed")
    if not picked:
        st.caption("Each answer keeps the codes of the set that fit it: " + " · ".join(
            f"{answer.answer}: {', '.join(answer.codes)}" for answer in question.answers))
        return
    kept = follow_up.keep_answer(codes, probabilities, options[picked])
    st.markdown(f"Kept after “{literal(options[picked].answer)}”, re-ranked: " + ", ".join(
        f"`{code}` {probability:.0%}" for code, probability in kept))


def rev2_caption(code: str) -> None:
    """The candidate's Rev 2 classes, each wholly inside it or only partly."""
    st.caption(load_correspondence().rev2_summary(code))


def relabel_section(classifier: Classifier) -> None:
    """A CSV coded in Rev 2 (bounded rows), relabelled into Rev 2.1, downloadable as the batch coder writes files."""
    st.caption("Upload a CSV coded in NACE Rev 2, with a description column. Rev 2 classes that went to one Rev 2.1 "
               "class take it from Eurostat's correspondence table; the others go to the class the model prefers "
               "among the ones the table allows (its probability renormalised over them). Rows with no text, or a "
               f"code outside the table, are left unknown. At most {MAX_RELABEL_ROWS:,} rows here; "
               "`nace-app relabel` streams files of any length.")
    upload = st.file_uploader("File to relabel", type=["csv"], key="relabel_file")
    if upload is None:
        return
    try:
        read = batch.read_upload(upload.name, upload.getvalue())
    except NaceAppError as exc:
        st.error(literal(str(exc)))
        return
    frame = read.frame
    if frame.height > MAX_RELABEL_ROWS:
        st.error(f"{frame.height:,} rows: the page relabels at most {MAX_RELABEL_ROWS:,}. Use `nace-app relabel`.")
        return
    columns = st.columns(3)
    code_column = columns[0].selectbox("Rev 2 code column", frame.columns, key="relabel_code_column")
    text_column = columns[1].selectbox("Description column", frame.columns,
                                       index=frame.columns.index(batch.guess_text_column(frame)), key="relabel_text_column")
    review_below = columns[2].slider("Flag model choices below", 0.0, 1.0, relabel.DEFAULT_REVIEW_BELOW, 0.05,
                                     key="relabel_review_below")
    request = (upload.name, upload.size, code_column, text_column, review_below, classifier.fingerprint)
    if st.button("Relabel the file", type="primary"):
        try:
            st.session_state.relabel_result = (request, relabel.relabel_frame(classifier, frame, code_column,
                                                                              text_column, review_below))
        except NaceAppError as exc:
            st.error(literal(str(exc)))
            return
    result = st.session_state.get("relabel_result")
    if result is None or result[0] != request:
        if result is not None:
            st.caption("The file, columns or threshold changed: press **Relabel the file** again.")
        return
    relabelled = result[1]
    for line in relabelled.counts.summary():
        st.markdown(f"- {literal(line)}")
    st.dataframe(relabelled.frame.head(200), width="stretch", hide_index=True)
    stem = upload.name.rsplit(".", 1)[0]
    downloads = st.columns(2)
    downloads[0].download_button("Excel (.xlsx)", batch.to_xlsx_bytes(relabelled.frame), f"{stem}_rev21.xlsx",
                                 mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", width="stretch")
    downloads[1].download_button("CSV", batch.to_csv_bytes(relabelled.frame, read.separator), f"{stem}_rev21.csv",
                                 mime="text/csv", width="stretch")
