"""Predict: top-k NACE codes (with their Rev 2 classes) for a description, a follow-up question when the set holds
several codes, why each code, similar labelled rows, corrections, batch coding, relabelling a Rev 2 file."""

import streamlit as st

from nace_app.app import caches, comparisons, figures, links, picker, state, transition, widgets
from nace_app.coding import batch, predicting
from nace_app.data import tables
from nace_app.explain import agreement, attributions
from nace_app.explain.highlight import FLAG, FLAG_NOTE, highlighted_text_html
from nace_app.model.classifier import Prediction
from nace_app.settings.errors import NaceAppError

PREVIEW_ROWS = 200
VIEW_TITLES = {"highlights": "Highlights", "contrast": "A vs B", "words": "Words & characters",
               "occlusion": "Leave one out", "attention": "Label attention"}
SCALES_NOTE = ("Highlights, A vs B and the word bars are integrated gradients on the code's logit; leave one out is "
               "the change in its probability when a word is removed.")

if "predict_link_read" not in st.session_state:  # a shared link sets the first view; it is untrusted input
    shared = links.parse_query(dict(st.query_params))
    st.session_state.update(predict_link_read=True, description=shared.text, submitted=shared.text,
                            top_k=shared.top_k, wanted_code=shared.code, wanted_rival=shared.rival,
                            explain_view=shared.view)
    st.session_state[transition.ANSWER_KEY] = shared.follow_up
    if shared.model:
        uri = picker.model_uri_for_link(shared.model)
        if uri is None:
            st.session_state.link_notice = (f"The link was made with the model “{shared.model}”, which this server "
                                            "does not have: the codes below come from the default model.")
        elif uri.startswith("runs:/"):
            st.session_state.update({state.MODEL_KEY: "runs:", state.RUN_ID_KEY: uri.split("/")[1]})
            st.rerun()
        else:
            st.session_state[state.MODEL_KEY] = uri
            st.rerun()

current = picker.active()
classifier = current.classifier
score_name, threshold = state.automation_rule()


def submit(text: str | None = None) -> None:
    if text is not None:
        st.session_state.description = text
    st.session_state.submitted = st.session_state.description
    st.session_state.wanted_code = None
    st.session_state.pop(transition.ANSWER_KEY, None)


st.title("Code an activity description")
st.caption("Type what a business does, as a person would write it: NACE Explorer proposes NACE Rev 2.1 classes "
           "and shows which words drove each one.")
if st.session_state.get("link_notice"):
    st.info(st.session_state.pop("link_notice"), icon=":material/link_off:")



def code_example() -> None:
    """A click codes the example and lets go of the pill: a second click codes it again, even after other text."""
    example = st.session_state.example_choice
    st.session_state.example_choice = None
    if example:
        submit(example)


st.pills("Try an example", list(predicting.EXAMPLES), key="example_choice", selection_mode="single", on_change=code_example)
state.kept(st.text_area, "Activity description", key="description", default="", height=110, on_change=submit,
        placeholder="e.g. I sell croissants and pains au chocolat in my bakery",
        help="Ctrl+Enter, or a click outside the box, codes it.")
code_column, k_column = st.columns([1, 3], vertical_alignment="bottom")
code_column.button("Code it", type="primary", on_click=submit, width="stretch")
with k_column:
    top_k = state.kept(st.slider, "Candidates to show (top-k)", 1, predicting.MAX_TOP_K, key="top_k",
                    default=predicting.DEFAULT_TOP_K)
typed = st.session_state.get("submitted") or ""


def disagreements(text: str, selected: str) -> list[agreement.SignDisagreement]:
    """The top words on which integrated gradients and leave-one-out point opposite ways, with a one-line list."""
    flags = agreement.sign_disagreements(caches.explanation(classifier, text, selected).words,
                                         caches.occlusion_drops(classifier, text, selected))
    line = agreement.disagreement_line(flags)
    if line:
        st.caption(f":material/compare_arrows: {FLAG} {widgets.literal(line)}")
    return flags


def show_highlights(text: str, selected: str, codes: list[str], read_until: int | None) -> None:
    explanation = caches.explanation(classifier, text, selected)
    st.caption(f"Integrated gradients for **{selected}** · {classifier.nomenclature.heading(selected)}")
    flags = disagreements(text, selected)
    flagged = frozenset((f.start, f.end) for f in flags)
    st.html(highlighted_text_html(text, attributions.spans(explanation.words), selected, read_until, flagged))
    with st.expander("Word scores (table)", key="word_scores_open", on_change="rerun") as word_scores:
        if word_scores.open:  # drawn only when opened: every "Code it" would otherwise build and send it
            st.dataframe(attributions.word_table(explanation.words, flagged), hide_index=True, width="stretch",
                         column_config={"score": st.column_config.NumberColumn("score toward the code", format="%+.3f"),
                                        "leave-one-out": st.column_config.TextColumn(
                                            "leave-one-out", help=f"{FLAG}: {FLAG_NOTE} in sign")})
    check = caches.faithfulness_check(classifier, text, selected)
    if check is not None:
        change = -check.drop
        st.metric(f"P({selected}) without “{check.word}”", f"{check.probability_without:.1%}",
                  delta=None if abs(change) < 0.0005 else predicting.points(change), delta_color="inverse",
                  help=f"Faithfulness check: with the most influential word removed, against {check.probability:.1%} "
                       "with it. It should go down (green); red means it went up and the check failed.")
    st.caption(f"Completeness: attributions sum to {explanation.attribution_total:.3f}, logit change from the padding "
               f"baseline {explanation.logit_delta:.3f} (gap {explanation.relative_gap:.2%}, {explanation.steps} steps).")


def show_contrast(text: str, selected: str, codes: list[str], read_until: int | None) -> None:
    rival = predicting.rival_code(codes, selected, st.session_state.get("rival_code"),
                                  st.session_state.get("wanted_rival"))
    if rival is None:
        st.info("Show at least two candidates (top-k ≥ 2) to compare them.")
        return
    st.session_state.rival_code = rival
    rival = st.selectbox("Rather than", [c for c in codes if c != selected], key="rival_code",
                         format_func=lambda c: f"{c} · {classifier.nomenclature.heading(c)}")
    explanation = caches.explanation(classifier, text, selected)
    rival_explanation = caches.explanation(classifier, text, rival)
    st.caption(f"Words marked + push toward **{selected}** more than toward **{rival}**; words marked − the other way.")
    st.html(highlighted_text_html(text, attributions.contrast(explanation, rival_explanation), f"{selected} over {rival}",
                                  read_until))


def show_words(text: str, selected: str, codes: list[str], read_until: int | None) -> None:
    explanation = caches.explanation(classifier, text, selected)
    st.plotly_chart(figures.signed_bars([w.word for w in explanation.words], [w.score for w in explanation.words],
                                        f"Word attributions for {selected}", "attribution"), width="stretch")
    st.plotly_chart(figures.char_weights(text, attributions.char_view(explanation, text), f"Characters · {selected}"),
                    width="stretch")
    st.caption("Characters: the reference notebook's view (torchTextClassifiers' softmax over characters). Darker "
               "blue is a larger share; the shares are never negative and sum to 100%. Each character takes the "
               "scores of the tokens over it and the softmax then stresses the largest and drops the sign, so a word "
               "with an orange bar above reads pale here, not opposite, and a word cut into several tokens can look "
               "stronger or weaker than its bar. The bars are the signed measure.")


def show_occlusion(text: str, selected: str, codes: list[str], read_until: int | None) -> None:
    st.caption("Exact, model-agnostic check: how much the probability of the code drops when each word is deleted.")
    explanation = caches.explanation(classifier, text, selected)
    drops = caches.occlusion_drops(classifier, text, selected)
    warning = attributions.disagreement(explanation, drops)
    if warning:
        st.warning(warning, icon=":material/compare_arrows:")
    flagged = {(f.start, f.end) for f in disagreements(text, selected)}
    st.plotly_chart(figures.signed_bars([w.word for w in explanation.words], drops,
                                        f"Drop in P({selected}) when the word is removed", "probability drop",
                                        [FLAG if (w.start, w.end) in flagged else "" for w in explanation.words]),
                    width="stretch")


def show_label_attention(text: str, selected: str, codes: list[str], read_until: int | None) -> None:
    st.plotly_chart(caches.label_attention_figure(classifier, text, selected), width="stretch")


def shared_view_model() -> str | None:
    """How a shared link names the model in use (None for the default)."""
    return (None if current.is_default else "embedded" if current.source.is_embedded
            else f"trained:{current.trained.run_id}" if current.trained else
            current.source.uri if current.source.uri.startswith("runs:/") else None)


@st.fragment
def why_this_code(text: str, codes: list[str], read_until: int | None, top_k: int) -> None:
    """One candidate's explanation, and its correction: another candidate or view reruns only this part."""
    st.subheader("Why this code?")
    st.radio("Explain candidate", codes, key="selected_code", horizontal=True)
    selected = st.session_state.selected_code
    shown_views = [v for v in VIEW_TITLES if v != "attention" or classifier.has_label_attention]
    st.session_state.explain_view = st.session_state.get("explain_view") if st.session_state.get(
        "explain_view") in shown_views else shown_views[0]
    view = st.segmented_control("View", shown_views, key="explain_view", format_func=VIEW_TITLES.get,
                                label_visibility="collapsed") or shown_views[0]
    st.caption(SCALES_NOTE)
    {"highlights": show_highlights, "contrast": show_contrast, "words": show_words,
     "occlusion": show_occlusion, "attention": show_label_attention}[view](text, selected, codes, read_until)
    with st.expander("Confirm or correct the code", icon=":material/rate_review:", key="correction_open",
                     on_change="rerun") as correction:
        if correction.open:  # drawn only when opened: its picker of every class would weigh on each "Code it"
            widgets.correction_form(text, codes[0], classifier, default_code=selected,
                                    key=f"predict_{abs(hash((text, selected)))}")
    st.query_params.from_dict(links.link_params(links.SharedView(
        text, top_k, selected, st.session_state.get("rival_code") if view == "contrast" else None, view,
        shared_view_model(), transition.link_value())))


single, batch_tab, relabel_tab, what_if_tab, models_tab = st.tabs(
    ["Single description", "Batch coding (CSV or TXT)", "Relabel a Rev 2 file", "What if", "Two models"],
    key="predict_tab", on_change="rerun")

with single:
    if not typed.strip():
        st.info("Type a description above and press **Code it**, or pick an example.", icon=":material/edit:")
    else:
        prepared = predicting.prepare(typed)
        text = prepared.text
        if prepared.cut_from:
            st.warning(f"The description has {prepared.cut_from:,} characters; only the first "
                       f"{predicting.MAX_CHARS:,} are coded.")
        unknown_share, read_until = caches.reading(classifier, text)
        if unknown_share > predicting.UNKNOWN_WARNING_SHARE:
            reads_english = current.source.is_embedded or (current.trained is not None and current.data.source.is_embedded)
            st.warning("Most of this text is unknown to the model (another language, other alphabets, emoji, symbols or "
                       "rare words): the codes below are little more than a guess."
                       + (" This model learned from English descriptions only: translate a French or German one first."
                          if reads_english else ""), icon=":material/help:")
        if read_until is not None:
            st.info(f"This model reads a fixed window: it saw only “{widgets.literal(text[:read_until])}…”. The rest "
                    "(struck through below) changes nothing.", icon=":material/content_cut:")
        best_ten = Prediction(text, caches.top_candidates(classifier, text))
        candidates = best_ten.candidates[:top_k]
        codes = [c.code for c in candidates]
        selected = predicting.explained_code(codes, st.session_state.get("selected_code"),
                                             st.session_state.get("wanted_code"))
        st.session_state.selected_code = selected
        st.caption(f"Codes for: “{widgets.literal(text[:120])}{'…' if len(text) > 120 else ''}” · model "
                   f"`{current.source.shown_uri}`")

        left, right = st.columns([5, 7], gap="medium")
        with left:
            st.subheader("Candidates")
            level, rule = state.coverage_level(), state.coding_rule()
            try:
                prediction_set = caches.prediction_set(classifier, text, level)
            except NaceAppError as exc:
                prediction_set = None
                st.caption(f"No prediction set: {widgets.literal(str(exc))}")
            decision = predicting.decision(best_ten, None if prediction_set is None else len(prediction_set), rule,
                                           score_name, threshold,
                                           *caches.rule_records(classifier, rule, score_name, threshold, level))
            (st.success if decision.automatic else st.warning)(decision.sentence)
            if prediction_set is not None:
                st.markdown(predicting.set_sentence(prediction_set, level))
            st.caption(decision.alternative)
            for rank, candidate in enumerate(candidates, start=1):
                with st.container(border=True):
                    st.markdown(f"**{rank}. `{candidate.code}`** {candidate.heading}")
                    st.progress(min(max(candidate.probability, 0.0), 1.0), text=f"{candidate.probability:.1%}")
                    st.caption(predicting.nace_path(classifier.nomenclature, candidate.code))
                    transition.rev2_caption(candidate.code)
            transition.follow_up_chips(classifier, text, level)
        with right:
            why_this_code(text, codes, read_until, top_k)
        st.subheader("Similar labelled examples")
        widgets.similar_examples_when_ready(classifier, current.data, text)

with relabel_tab:  # before the batch tab, whose errors stop the script
    transition.relabel_section(classifier)

with batch_tab:
    st.caption("Upload a CSV (comma, semicolon or tab separated; UTF-8 or latin-1) or a TXT file with one "
               f"description per line. Limit 20 MB and {batch.MAX_PAGE_ROWS:,} rows (the command line and Spark take "
               "more). Every row comes back, in order, with its codes.")
    upload = st.file_uploader("File to code", type=["csv", "txt"], key="batch_file")
    if upload is not None:
        try:
            read = batch.read_upload(upload.name, upload.getvalue())
        except NaceAppError as exc:
            st.error(widgets.literal(str(exc)))
            st.stop()
        frame = read.frame
        column = st.selectbox("Text column", frame.columns, index=frame.columns.index(batch.guess_text_column(frame)),
                              key="batch_column")
        numbers = tables.numbers_only(frame[column])
        if numbers:
            st.warning(f"The column “{widgets.literal(column)}” holds only numbers: pick the column with the "
                       "descriptions.", icon=":material/pin:")
        st.caption(f"{frame.height:,} rows · top-{top_k} codes · verdict by {score_name} ≥ {threshold:.2f} "
                   "(sidebar)")
        request = (upload.name, upload.size, column, top_k, score_name, threshold, classifier.fingerprint)
        if st.button("Code the file", type="primary", disabled=numbers):
            bar = st.progress(0.0, text="Coding…")
            try:
                coded = batch.code_upload(classifier, frame, column, top_k, score_name, threshold,
                                          caches.batch_folder(), progress=lambda done, total: bar.progress(
                                              done / total, text=f"Coded {done:,} of {total:,}"))
            except NaceAppError as exc:
                st.error(widgets.literal(str(exc)))
                st.stop()
            st.session_state.batch_result = (request, coded)
        result = st.session_state.get("batch_result")
        if result is not None and result[0] == request and result[1].path.is_file():
            coded = result[1]
            st.dataframe(widgets.without_none(coded.head(PREVIEW_ROWS), batch.DECIMALS), width="stretch",
                         hide_index=True)
            if coded.rows > PREVIEW_ROWS:
                st.caption(f"The first {PREVIEW_ROWS:,} of {coded.rows:,} rows: the downloads hold every row.")
            stem = upload.name.rsplit(".", 1)[0]
            downloads = st.columns(3)
            if coded.xlsx_refusal:
                downloads[0].caption(coded.xlsx_refusal)
            else:
                downloads[0].download_button("Excel (.xlsx)", coded.xlsx_bytes, f"{stem}_coded.xlsx",
                                             mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                             width="stretch")
            downloads[1].download_button("CSV", lambda: coded.csv_bytes(read.separator), f"{stem}_coded.csv",
                                         mime="text/csv", width="stretch")
            downloads[2].download_button("Parquet", coded.parquet_bytes, f"{stem}_coded.parquet",
                                         mime="application/octet-stream", width="stretch")
        elif result is not None:
            st.caption("The file, column or settings changed: press **Code the file** again.")

for tab, compare in ((what_if_tab, comparisons.what_if_editor), (models_tab, comparisons.two_models_on_text)):
    with tab:
        if not tab.open:
            continue
        if not typed.strip():
            st.info("Type a description above and press **Code it** first.", icon=":material/edit:")
        else:
            compare(classifier, predicting.prepare(typed).text, top_k)

caches.warm_up(classifier, current.data)  # after drawing: the first "Code it" then finds the torch model and caches ready
