"""Train: a small run on a subsample, live curves, a stop button, MLflow tracking, and a model usable at once;
optionally with the reviewers' corrections added to the training rows."""

import streamlit as st

from nace_app.app import caches, figures, picker, state, widgets
from nace_app.coding.predicting import EXAMPLES
from nace_app.model.tokenization import NGRAM, TOKENIZER_KINDS
from nace_app.review import evaluation
from nace_app.settings.errors import NaceAppError
from nace_app.training.core import TrainingSettings, select_training_rows
from nace_app.training.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, TrainingJob, probe_lines
from nace_app.training.runs import estimate_seconds, kept_epoch, much_weaker, results_table
from nace_app.training.runs import model_zip as zipped

FIGURES = {k: st.column_config.NumberColumn(format="%.3f") for k in ("top-1", "top-5", "macro-F1", "ECE", "section",
                                                                      "division")}
FORM = {"train_sample": "sample_size", "train_rows_per_class": "rows_per_class", "train_epochs": "epochs",
        "train_lr": "learning_rate",
        "train_tokenizer": "tokenizer", "train_dim": "embedding_dim", "train_batch": "batch_size",
        "train_attention": "attention", "train_heads": "attention_heads", "train_seed": "seed"}


def show_the_settings_of(job: TrainingJob) -> None:
    """A reloaded page (a new session) shows the settings and estimate of the run it reattaches to, once."""
    if st.session_state.get("form_of_job") == job.job_id:
        return
    st.session_state.form_of_job = job.job_id
    st.session_state.update({key: getattr(job.training, name) for key, name in FORM.items()})
    st.session_state.update(train_probes="\n".join(job.probe_texts), train_with_corrections=job.extra_rows is not None)


current = picker.active()
data = current.data
train_rows = data.splits.train.height
registry = caches.job_registry()
defaults = TrainingSettings()  # the workshop's run, the same as `nace-app train` without flags

st.title("Train a model")
st.caption(f"Trains on the train split of `{data.source.shown_uri}` ({train_rows:,} rows), stops early on the validation "
           "split, and reports figures on the test split. Runs in its own process: the page and the other sessions "
           "stay responsive.")

missing = data.splits.codes_missing_from_train()
if missing:
    st.warning(f"{len(missing)} codes appear in the validation or test split but never in the train split "
               f"({', '.join(missing[:10])}{'…' if len(missing) > 10 else ''}): no model trained here can predict them.")

job: TrainingJob | None = registry.get(st.session_state.get("training_job_id") or st.query_params.get("job"))
if job is not None:
    st.session_state.training_job_id = job.job_id
    show_the_settings_of(job)
running = job is not None and job.state in (QUEUED, RUNNING)

first, second, third = st.columns(3)
with first:
    sample_size = state.kept(st.number_input, "Subsample of the train split (rows)", 100, max(train_rows, 100),
                          key="train_sample", default=min(defaults.sample_size or train_rows, train_rows), step=500)
    rows_per_class = state.kept(st.number_input, "Rows per class, at most", 1, 10_000, key="train_rows_per_class",
                                default=defaults.rows_per_class, step=10,
                                help="A stratified cap: every class keeps this many rows of the subsample (or all it "
                                     "has). The workshop's run keeps 30.")
    epochs = state.kept(st.slider, "Epochs", 1, 30, key="train_epochs", default=defaults.epochs)
    learning_rate = state.kept(st.select_slider, "Learning rate", [0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1],
                            key="train_lr", default=defaults.learning_rate)
with second:
    tokenizer = state.kept(st.radio, "Tokenizer", TOKENIZER_KINDS, key="train_tokenizer", default=defaults.tokenizer,
                        horizontal=True, help=f"n-gram: character {defaults.ngram_min}–{defaults.ngram_max}-grams and words, as "
                                              "fastText and INSEE's production coder; wordpiece: sub-words learned "
                                              "from the sample.")
    embedding_dim = state.kept(st.select_slider, "Embedding dimension", [16, 32, 48, 64, 96, 128], key="train_dim",
                            default=defaults.embedding_dim)
    batch_size = state.kept(st.select_slider, "Batch size", [16, 32, 64, 128, 256, 512, 1024, 2048], key="train_batch",
                         default=defaults.batch_size)
with third:
    attention = state.kept(st.toggle, "Self-attention", key="train_attention", default=defaults.attention)
    attention_heads = state.kept(st.select_slider, "Attention heads", [1, 2, 4, 8], key="train_heads",
                              default=defaults.attention_heads, disabled=not attention)
    seed = state.kept(st.number_input, "Seed", 0, 2**31 - 1, key="train_seed", default=defaults.seed)
probes = state.kept(st.text_area, "Probe descriptions (one per line): their top-3 codes are recomputed after every epoch",
                 key="train_probes", default="\n".join(list(EXAMPLES)[:3]), height=90)

try:
    corrections = caches.correction_store().training_rows()
except NaceAppError as exc:
    corrections = None
    st.caption(f"Corrections unavailable: {widgets.literal(str(exc))}")
with_corrections = corrections is not None and corrections.height > 0 and state.kept(
    st.toggle, f"Train with the corrections ({corrections.height:,} "
               f"description{'s' if corrections.height > 1 else ''}, Review › Corrections)",
    key="train_with_corrections", default=False,
    help="Adds each corrected description, with its right code, to the training rows (the latest correction of a "
         "text counts). Corrected test descriptions are then left out of the before/after figures.")

settings_error = None
try:
    settings = TrainingSettings(**{
        **defaults.to_dict(), "sample_size": None if sample_size >= train_rows else int(sample_size),
        "rows_per_class": int(rows_per_class),
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "embedding_dim": embedding_dim,
        "tokenizer": tokenizer, "attention": attention, "attention_heads": attention_heads, "seed": int(seed),
        "token_dropout": defaults.token_dropout if tokenizer == NGRAM else 0.0})
except ValueError as exc:  # NaceAppError: the settings explain themselves
    settings, settings_error = None, str(exc)
if settings_error:
    st.error(widgets.literal(settings_error))
else:
    estimate = estimate_seconds(settings, select_training_rows(data.splits.train, settings).height,
                                current.settings.cache_dir)
    st.caption(f"Estimated duration: about {estimate:.0f} s, from this server's recent runs of this kind (the median)." if estimate
               else "Estimated duration: not measured on this server yet; the progress bar shows the time left "
                    "once the run has started.")
start = st.button("Start training", type="primary", disabled=running or settings is None,
                  help="A run is in progress: stop it or wait for it." if running else None)

if start and settings is not None:
    job = registry.add(TrainingJob(data, settings, current.settings, caches.training_queue(),
                                   probe_texts=probe_lines(probes),
                                   extra_rows=corrections if with_corrections else None).start())
    st.session_state.update(training_job_id=job.job_id, form_of_job=job.job_id)
    st.query_params["job"] = job.job_id
    st.rerun()

if job is None:
    st.info("Choose settings and press **Start training**. The defaults are a workshop's run: a usable model in "
            "well under a minute on a quiet server.",
            icon=":material/model_training:")
    st.stop()


@st.fragment(run_every=1.0 if running else None)
def live_view(job: TrainingJob) -> None:
    """Polls the job's snapshot; the training thread itself never touches Streamlit."""
    snap = job.snapshot()
    if snap.state in (QUEUED, RUNNING) and st.button("Stop", type="secondary", key="stop_training"):
        job.stop()
    if snap.state == QUEUED:
        wait = registry.seconds_before_start(job)
        when = f"in about {wait:.0f} s" if wait is not None else "when the runs ahead of it finish"
        st.warning(f"Another training run is using this server. Your run is queued (position "
                   f"{snap.queue_position}) and starts by itself {when}.",
                   icon=":material/hourglass_top:")
        return
    st.progress(snap.fraction, text=snap.label)
    loss, accuracy = figures.training_curves(snap.steps, snap.epochs, snap.steps_per_epoch)
    st.plotly_chart(loss, width="stretch", key="loss_curve")
    st.plotly_chart(accuracy, width="stretch", key="accuracy_curve")
    if snap.probes:
        kept = kept_epoch(job.result.history) if job.result is not None else None
        shown = next((probe for probe in snap.probes if probe["epoch"] == kept), snap.probes[-1])
        st.subheader(f"Probe descriptions with the kept model (epoch {kept})" if shown["epoch"] == kept
                     else f"Probe descriptions after epoch {shown['epoch']}")
        rows = [{"description": text, **{f"#{rank + 1}": f"{code} ({p:.0%})" for rank, (code, p) in enumerate(top)}}
                for text, top in zip(job.probe_texts, shown["top3"], strict=False)]
        st.dataframe(rows, hide_index=True, width="stretch")
    if snap.state in (DONE, STOPPED, FAILED) and running:
        st.rerun(scope="app")


live_view(job)


def show_correction_effect(corrections, model_dir: str) -> None:
    """Before/after on the same test split, without the corrected descriptions (the new model trained on them)."""
    test, left_out = evaluation.without_texts(data.splits.test, corrections["label"].to_list())
    before, after = caches.default_workspace().classifier, caches.opened_classifier(model_dir)
    plural = corrections.height > 1
    st.markdown(f"**With the {corrections.height:,} correction{'s' if plural else ''}: before and after**")
    if left_out:
        them = "them" if left_out > 1 else "it"
        st.caption(f"{left_out:,} corrected description{'s are' if left_out > 1 else ' is'} in the test split: both "
                   f"models are measured without {them}, since this run trained on {them}.")
    st.dataframe(evaluation.comparison_rows({
        "default model · test": caches.evaluation_on(before, test), "this run · test": caches.evaluation_on(after, test),
        "default model · the corrections": caches.evaluation_on(before, corrections),
        "this run · the corrections (trained on)": caches.evaluation_on(after, corrections)}),
        hide_index=True, width="stretch", column_config=FIGURES)

if job.state == FAILED:
    st.error(f"The run failed: {widgets.literal(job.error or '')}")
elif job.state == STOPPED and job.result is None:
    st.warning(job.error or "The run was stopped before it produced a model.")
elif job.result is not None:
    result = job.result
    if result.stopped_by_user:
        st.info("Stopped by you: the best checkpoint so far was kept.")
    st.subheader("Result")
    default = caches.test_evaluation(caches.default_workspace().classifier, data)
    kept = kept_epoch(result.history)
    if kept is not None:
        st.caption(f"The model kept is the one after epoch {kept} of {len(result.history)}: the lowest validation "
                   "loss. Its figures are below, and its probes above.")
    st.dataframe(results_table(result, default), hide_index=True, width="stretch", column_config=FIGURES)
    if job.extra_rows is not None:
        show_correction_effect(job.extra_rows, str(result.model_dir))
    run = job.run
    if run is not None and run.failure is None:
        st.caption(f"MLflow run `{run.run_id}` · {run.link}")
    elif run is not None:
        st.warning(f"Training finished, but {widgets.literal(run.failure or '')}. The model is still usable here.")
    weaker = much_weaker(result, default)
    if weaker:
        st.warning(f"This model is much weaker than the default on the same test split (top-1 "
                   f"{result.test.top1_accuracy:.1%} against {default.top1_accuracy:.1%}): train longer or on more "
                   "rows before using it.", icon=":material/trending_down:")
    actions = st.columns(2)
    actions[0].button("Use this model anyway" if weaker else "Use this model", type="secondary" if weaker else "primary",
                      on_click=picker.use_model, args=(str(result.model_dir),), width="stretch",
                      help="Selects it in the sidebar picker, for every page.")
    actions[1].download_button("Download the model (.zip)", zipped(result.model_dir, job.job_id), f"{job.job_id}.zip",
                               mime="application/zip", width="stretch")
    st.caption(f"Saved in the cache folder: `{result.model_dir}` (JSON + safetensors, no pickle). It stays listed in "
               "the model picker of this server.")
