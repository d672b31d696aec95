"""Train: a small run on a subsample, live curves, a stop button, MLflow tracking, and a model usable at once."""

import io
import zipfile

import polars as pl
import streamlit as st

from nace_app import figures, ui
from nace_app.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, TrainingJob
from nace_app.training import TrainingSettings, derive_output_dim, estimate_seconds

DEFAULT_PROBES = "\n".join([
    "I sell croissants and pains au chocolat in my bakery",
    "I develop business management software for companies",
    "I repair cars and carry out technical inspections",
])

current = ui.active()
data = current.data
train_rows = data.splits.train.height

st.title("Train a model")
st.caption(f"Trains on the train split of `{data.source.uri}` ({train_rows:,} rows), stops early on the validation "
           "split, and reports figures on the test split. Runs in the background: the page stays responsive.")

missing = data.splits.codes_missing_from_train()
if missing:
    st.warning(f"{len(missing)} codes appear in the validation or test split but never in the train split "
               f"({', '.join(missing[:10])}{'…' if len(missing) > 10 else ''}): no model trained here can predict them.")

job: TrainingJob | None = st.session_state.get("training_job")
running = job is not None and job.state in (QUEUED, RUNNING)

with st.form("training_settings"):
    first, second, third = st.columns(3)
    sample_size = first.number_input("Subsample of the train split (rows)", 100, train_rows,
                                     min(5000, train_rows), step=500)
    epochs = first.slider("Epochs", 1, 20, 2)
    batch_size = first.select_slider("Batch size", [16, 32, 64, 128, 256], 64)
    learning_rate = first.select_slider("Learning rate", [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016], 0.004)
    embedding_dim = second.select_slider("Embedding dimension", [16, 32, 48, 64, 96, 128, 192, 256], 64)
    vocab_size = second.select_slider("Tokenizer vocabulary size", [1000, 2000, 3000, 4000, 6000, 8000, 12000], 4000)
    lengths = ui.token_lengths_hint(data, data.fingerprint)
    output_dim = second.number_input("Tokenizer output_dim (0 = derive from the sample)", 0, 512, 0,
                                     help=f"Derived default for this data: {derive_output_dim(lengths)} tokens "
                                          "(99th percentile of the token lengths, rounded up to 8).")
    attention = third.toggle("Self-attention", False)
    attention_layers = third.slider("Attention layers", 1, 4, 1, disabled=False)
    attention_heads = third.select_slider("Attention heads", [1, 2, 4, 8], 4)
    patience = third.slider("Early-stopping patience (epochs)", 1, 10, 3)
    seed = third.number_input("Seed", 0, 2**31 - 1, 42)
    probes = st.text_area("Probe descriptions (one per line): their top-3 codes are recomputed after every epoch",
                          DEFAULT_PROBES, height=90)
    settings = TrainingSettings(
        sample_size=int(sample_size), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        embedding_dim=embedding_dim, vocab_size=vocab_size, output_dim=int(output_dim) or None,
        attention=attention, attention_layers=attention_layers, attention_heads=attention_heads,
        patience=patience, seed=int(seed))
    if attention and embedding_dim % attention_heads:
        st.warning("The embedding dimension must be divisible by the number of heads.")
    st.caption(f"Estimated duration: about {estimate_seconds(settings, train_rows):.0f} s on 2 CPU cores.")
    start = st.form_submit_button("Start training", type="primary", disabled=running)

if start and not running:
    if attention and embedding_dim % attention_heads:
        st.error("Choose an embedding dimension divisible by the number of heads.")
        st.stop()
    queue = ui.training_queue()
    job = TrainingJob(data, settings, current.settings, queue,
                      probe_texts=[line.strip() for line in probes.splitlines() if line.strip()][:8]).start()
    st.session_state.training_job = job
    running = True

if job is None:
    st.info("Choose settings and press **Start training**. The defaults finish in well under a minute.", icon=":material/model_training:")
    st.stop()


@st.fragment(run_every=1.0 if running else None)
def live_view(job: TrainingJob) -> None:
    """Polls the job's snapshot; the training thread itself never touches Streamlit."""
    snap = job.snapshot()
    state = snap["state"]
    total = max(snap["total_steps"], 1)
    steps_per_epoch = max(total // max(job.training.epochs, 1), 1)
    if state == QUEUED:
        st.warning(f"Another training run is using this server. Your run is queued (position "
                   f"{snap['queue_position']}); it starts by itself.", icon=":material/hourglass_top:")
    if state in (QUEUED, RUNNING):
        if st.button("Stop", type="secondary", key="stop_training"):
            job.stop()
    fraction = min(snap["step"] / total, 1.0)
    left = (snap["elapsed"] / fraction - snap["elapsed"]) if fraction > 0 else None
    epoch = min(snap["step"] // steps_per_epoch + 1, job.training.epochs)
    label = (f"Epoch {epoch} of {job.training.epochs} · step {snap['step']:,} of {total:,} · "
             f"{snap['elapsed']:.0f} s elapsed" + (f" · about {left:.0f} s left" if left is not None and
                                                   state == RUNNING else ""))
    st.progress(fraction if state != DONE else 1.0, text=label if state in (QUEUED, RUNNING) else f"{state} · {label}")
    loss, accuracy = figures.training_curves(snap["steps"], snap["epochs"], steps_per_epoch)
    curve_left, curve_right = st.columns(2)
    curve_left.plotly_chart(loss, width="stretch", key="loss_curve")
    curve_right.plotly_chart(accuracy, width="stretch", key="accuracy_curve")
    if snap["probes"]:
        st.subheader("Probe descriptions")
        latest = snap["probes"][-1]
        rows = [{"description": text, **{f"#{rank + 1}": f"{code} ({p:.0%})" for rank, (code, p) in enumerate(top)}}
                for text, top in zip(job.probe_texts, latest["top3"], strict=False)]
        st.caption(f"Top-3 codes after epoch {latest['epoch']}")
        st.dataframe(pl.DataFrame(rows), hide_index=True, width="stretch")
    if state in (DONE, STOPPED, FAILED) and running:
        st.rerun(scope="app")


live_view(job)

if job.state == FAILED:
    st.error(f"The run failed: {job.error}")
elif job.state == STOPPED and job.result is None:
    st.warning(job.error or "The run was stopped before it produced a model.")
elif job.result is not None:
    result = job.result
    if result.stopped_by_user:
        st.info("Stopped by you: the best checkpoint so far was kept.")
    st.subheader("Result")
    default = ui.default_test_figures(data, data.fingerprint)
    rows = []
    for name, figures_ in (("this run · validation", result.validation), ("this run · test", result.test),
                           ("default model · test", default)):
        rows.append({"model / split": name, "rows": figures_.get("n"), "top-1": figures_.get("top1_accuracy"),
                     "top-5": figures_.get("top5_accuracy"), "macro-F1": figures_.get("macro_f1"),
                     "ECE": figures_.get("ece"),
                     **{level: figures_.get("accuracy_by_level", {}).get(level) for level in ("section", "division")}})
    st.dataframe(pl.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("top-1", "top-5", "macro-F1", "ECE", "section", "division")})
    run = job.run
    if run is not None and run.failure is None:
        st.caption(f"MLflow run `{run.run_id}` · {run.link}")
    elif run is not None:
        st.warning(f"Training finished, but {run.failure}. The model is still usable here.")
    action_left, action_right, _ = st.columns([1, 1, 2])
    action_left.button("Use this model", type="primary", on_click=ui.use_trained_model,
                       args=(job.job_id, result.model_dir), help="Selects it in the sidebar picker of every page.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(result.model_dir.iterdir()):
            archive.write(path, arcname=f"{job.job_id}/{path.name}")
    action_right.download_button("Download the model (.zip)", buffer.getvalue(), f"{job.job_id}.zip",
                                 mime="application/zip")
    st.caption(f"Saved in the cache directory: `{result.model_dir}` (JSON + safetensors, no pickle).")
