"""Predict: top-k NACE codes for a description, why each code, and batch coding of a file."""

import polars as pl
import streamlit as st

from nace_app import batch, ui
from nace_app.classifier import Prediction
from nace_app.errors import NaceAppError
from nace_app.predict_view import (
    EXAMPLES,
    MAX_CHARS,
    MAX_TOP_K,
    contrast,
    parse_query,
    word_triples,
)

current = ui.active()
classifier = current.classifier

if "predict_ready" not in st.session_state:  # a shared link sets the first view; treat it as untrusted input
    shared = parse_query(dict(st.query_params))
    st.session_state.update(description=shared.text, top_k=shared.top_k, submitted=shared.text,
                            wanted_code=shared.code, predict_ready=True)


def use_example(example: str) -> None:
    st.session_state.description = example
    st.session_state.submitted = example
    st.session_state.wanted_code = None


st.title("Code an activity description")
st.caption("Type what a business does, as a person would write it. NACE Explorer proposes NACE Rev 2.1 classes "
           f"and shows which words drove each one. Model: `{current.source.uri}`.")

st.markdown("**Try an example**")
example_columns = st.columns(4)
for index, example in enumerate(EXAMPLES):
    example_columns[index % 4].button(example, key=f"example_{index}", on_click=use_example, args=(example,),
                                      width="stretch")

with st.form("code_form", border=False):
    st.text_area("Activity description", key="description", height=110,
                 placeholder="e.g. I sell croissants and pains au chocolat in my bakery")
    form_columns = st.columns([1, 5])
    submitted = form_columns[0].form_submit_button("Code it", type="primary", width="stretch")
    form_columns[1].caption("Ctrl+Enter also codes it.")
if submitted:
    st.session_state.submitted = st.session_state.description
    st.session_state.wanted_code = None

st.slider("Candidates to show (top-k)", 1, MAX_TOP_K, key="top_k")
top_k = st.session_state.top_k
text = st.session_state.get("submitted") or ""


def show_highlights(text: str, selected: str, codes: list[str]) -> None:
    explanation = ui.explanation(classifier, classifier.fingerprint, text, selected)
    st.caption(f"Integrated gradients for **{selected}** · {classifier.nomenclature.heading(selected)}")
    st.html(ui.highlighted_text_html(text, word_triples(explanation.words), selected))
    check = ui.faithfulness_check(classifier, classifier.fingerprint, text, selected)
    if check is not None:
        st.metric(f"Probability of {selected} without “{check.word}”", f"{check.probability_without:.1%}",
                  delta=f"{-check.drop:+.1%} vs {check.probability:.1%}", delta_color="normal",
                  help="Faithfulness check: removing the most influential word should lower the probability of the code.")
    st.caption(f"Completeness: attributions sum to {explanation.attribution_total:.3f}, logit change from the padding "
               f"baseline {explanation.logit_delta:.3f} (gap {explanation.relative_gap:.2%}, {explanation.steps} steps).")


def show_contrast(text: str, selected: str, codes: list[str]) -> None:
    others = [c for c in codes if c != selected]
    if not others:
        st.info("Show at least two candidates (top-k ≥ 2) to compare them.")
        return
    rival = st.selectbox("Rather than", others, key="rival_code",
                         format_func=lambda c: f"{c} · {classifier.nomenclature.heading(c)}")
    explanation = ui.explanation(classifier, classifier.fingerprint, text, selected)
    rival_explanation = ui.explanation(classifier, classifier.fingerprint, text, rival)
    st.caption(f"Blue words push toward **{selected}** more than toward **{rival}**; red ones the other way.")
    st.html(ui.highlighted_text_html(text, contrast(explanation, rival_explanation), f"{selected} over {rival}"))


def show_word_and_char_views(text: str, selected: str, codes: list[str]) -> None:
    explanation = ui.explanation(classifier, classifier.fingerprint, text, selected)
    word_figure, char_figure = ui.word_and_char_figures(explanation, text)
    st.plotly_chart(word_figure, width="stretch")
    st.plotly_chart(char_figure, width="stretch")


def show_occlusion(text: str, selected: str, codes: list[str]) -> None:
    st.caption("Exact, model-agnostic check: how much the probability of the code drops when each word is deleted.")
    st.plotly_chart(ui.occlusion_figure(classifier, classifier.fingerprint, text, selected), width="stretch")


def show_label_attention(text: str, selected: str, codes: list[str]) -> None:
    st.plotly_chart(ui.label_attention_figure(classifier, classifier.fingerprint, text, selected), width="stretch")


single, batch_tab = st.tabs(["Single description", "Batch coding (CSV or TXT)"])

with single:
    if not text.strip():
        st.info("Type a description above and press **Code it**, or pick an example.", icon=":material/edit:")
    else:
        if len(text) > MAX_CHARS:
            st.warning(f"The description has {len(text):,} characters; only the first {MAX_CHARS:,} are coded.")
            text = text[:MAX_CHARS]
        if ui.unknown_share(classifier, classifier.fingerprint, text) > 0.5:
            st.warning("Most of this text is unknown to the model's vocabulary (other alphabets, emoji or symbols): "
                       "the codes below are little more than a guess.", icon=":material/help:")
        best_ten = Prediction(text, ui.top_candidates(classifier, classifier.fingerprint, text))
        candidates = best_ten.candidates[:top_k]
        codes = [c.code for c in candidates]
        wanted = st.session_state.get("wanted_code")
        if st.session_state.get("selected_code") not in codes:
            st.session_state.selected_code = wanted if wanted in codes else codes[0]
        st.query_params.update(text=text, k=str(top_k), code=st.session_state.selected_code)

        left, right = st.columns([5, 7], gap="large")
        with left:
            st.subheader("Candidates")
            threshold = st.session_state[ui.THRESHOLD_KEY]
            confidence_index = best_ten.confidence_index  # top-1 minus top-2, whatever k shows
            verdict = "would be coded automatically" if confidence_index >= threshold else "goes to manual review"
            st.metric("Confidence index (top-1 − top-2)", f"{confidence_index:.3f}",
                      help="The gap between the two most probable codes, compared with the automation threshold "
                           "set in the sidebar.")
            (st.success if confidence_index >= threshold else st.warning)(
                f"At threshold {threshold:.2f}, this description **{verdict}**.")
            for rank, candidate in enumerate(candidates, start=1):
                with st.container(border=True):
                    st.markdown(f"**{rank}. `{candidate.code}`** {candidate.heading}")
                    st.progress(min(max(candidate.probability, 0.0), 1.0), text=f"{candidate.probability:.1%}")
                    st.caption(" › ".join(f"{step.code} {step.heading}"
                                          for step in classifier.nomenclature.path(candidate.code)[:-1])
                               or "unknown code")
        with right:
            st.subheader("Why this code?")
            st.radio("Explain candidate", codes, key="selected_code", horizontal=True,
                     format_func=lambda code: f"{code}")
            selected = st.session_state.selected_code
            tabs = ["Highlights", "Why A rather than B", "Word & character views", "Leave one word out"]
            if classifier.has_label_attention:
                tabs.append("Label attention")
            views = st.tabs(tabs, key="explain_view", on_change="rerun")  # only the open view is computed
            for view, show in zip(views, (show_highlights, show_contrast, show_word_and_char_views, show_occlusion,
                                          show_label_attention), strict=False):
                with view:
                    if view.open:
                        show(text, selected, codes)

with batch_tab:
    st.caption("Upload a CSV (comma, semicolon or tab separated; UTF-8 or latin-1) or a TXT file with one "
               "description per line. Limit 20 MB.")
    upload = st.file_uploader("File to code", type=["csv", "txt"], key="batch_file")
    if upload is not None:
        try:
            frame = batch.read_upload(upload.name, upload.getvalue())
        except NaceAppError as exc:
            st.error(str(exc))
            st.stop()
        column = st.selectbox("Text column", frame.columns, index=frame.columns.index(batch.guess_text_column(frame)),
                              key="batch_column")
        st.caption(f"{frame.height:,} rows")
        if st.button("Code the file", type="primary"):
            bar = st.progress(0.0, text="Coding…")
            texts = ["" if v is None else str(v)[:MAX_CHARS] for v in frame[column].to_list()]
            coded = batch.code_texts(classifier, texts, progress=lambda done, total: bar.progress(
                done / total, text=f"Coded {done:,} of {total:,}"))
            st.session_state.batch_result = (upload.name, pl.concat(
                [frame.drop([c for c in coded.columns if c in frame.columns]), coded.drop("text")], how="horizontal"))
        result = st.session_state.get("batch_result")
        if result is not None and result[0] == upload.name:
            coded = result[1]
            st.dataframe(coded.head(200), width="stretch", hide_index=True)
            stem = upload.name.rsplit(".", 1)[0]
            download_columns = st.columns(4)
            download_columns[0].download_button("Download CSV", batch.to_csv_bytes(coded), f"{stem}_coded.csv",
                                                mime="text/csv")
            download_columns[1].download_button("Download parquet", batch.to_parquet_bytes(coded),
                                                f"{stem}_coded.parquet", mime="application/octet-stream")
