"""Training runs on disk: one logged to MLflow in the foreground (the CLI, and each background job), and the
server's finished runs listed back from the cache folder, so that a reloaded page still offers them."""

from __future__ import annotations

import io
import json
import statistics
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nace_app.model.formats import is_own_format
from nace_app.review.evaluation import Evaluation, comparison_rows
from nace_app.settings.config import Settings
from nace_app.training.core import ProgressEvent, TrainingResult, TrainingSettings, train_model
from nace_app.training.process import train_in_child
from nace_app.training.tracking import RunLogger

RESULT_FILE = "result.json"
RECENT_RUNS = 5  # the time estimate is the median over this many latest runs


def run_logged_training(data, training: TrainingSettings, settings: Settings, workdir: Path, progress=None,
                        should_stop=None, probe=None, run_name: str = "training", model_dir: Path | None = None,
                        extra_rows=None, stopping_frame=None, in_child: bool = False,
                        tracked: bool = True) -> tuple[TrainingResult, RunLogger | None]:
    """Train and, when `tracked`, log everything to MLflow: parameters, per-epoch metrics, the split, our model
    format (and the library's too when the operator configured an MLflow server). The run is None when untracked.

    `in_child` trains in a child process (`process.train_in_child`; `probe` must then be picklable); logging
    stays in this process.

    Logging only queues records (see `tracking`): a slow or dead MLflow costs training nothing, and this returns at
    most `tracking.FLUSH_SECONDS` after MLflow stops answering, with `run.failure` saying what was not sent.
    """
    run = RunLogger(settings, run_name) if tracked else None
    if run is not None:
        run.log_params({**training.to_dict(), "data_uri": data.source.uri, "data_rows": data.frame.height})

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "epoch" and run is not None:
            run.log_metrics(event.metrics, step=event.epoch)
        if progress is not None:
            progress(event)

    try:
        train = train_in_child if in_child else train_model
        # the library's own format (which needs the library: seconds and a gigabyte) only for an operator's MLflow
        result = train(data.splits, training, workdir, progress=on_event, should_stop=should_stop, probe=probe,
                       model_dir=model_dir, extra_rows=extra_rows, stopping_frame=stopping_frame,
                       library_format=tracked and bool(settings.mlflow_tracking_uri))
    except BaseException:
        if run is not None:
            run.finish("FAILED")
        raise
    (workdir / RESULT_FILE).write_text(json.dumps({**result.to_dict(), "run_name": run_name,
                                                   "data_uri": data.source.shown_uri}, default=str))
    if run is not None:
        _log_outcome(run, result, data)
    return result, run


def _log_outcome(run: RunLogger, result: TrainingResult, data) -> None:
    """What a finished run adds to its MLflow run: the split, the figures, the model files, the final status."""
    run.log_params({"output_dim_used": result.output_dim})
    run.log_dict({**data.splits.describe(), "data_uri": data.source.uri, "data_fingerprint": data.fingerprint},
                 "split.json")
    run.log_metrics({"validation": result.validation.to_dict(), "test": result.test.to_dict()})
    run.log_artifacts(result.model_dir, "model")
    if result.library_dir is not None:
        run.log_artifacts(result.library_dir, "torchtextclassifiers_model")
    run.finish("KILLED" if result.stopped_by_user else "FINISHED")


@dataclass(frozen=True)
class TrainedRun:
    """A finished run of this server, as the model picker lists it."""

    run_id: str
    model_dir: Path
    finished: datetime
    test_top1: float | None
    settings: dict[str, Any]

    @property
    def uri(self) -> str:
        return str(self.model_dir)

    @property
    def name(self) -> str:
        """What tells runs apart first: a narrow picker cuts the end of the label, the date and tokenizer go."""
        tokenizer = self.settings.get("tokenizer", "wordpiece")
        figure = f"top-1 {self.test_top1:.0%} · " if self.test_top1 is not None else ""
        return f"{self.run_id} · {figure}{self.finished:%d %b %H:%M} · {tokenizer}"


def _finished_runs(cache_dir: Path) -> list[tuple[Path, float, dict[str, Any]]]:
    """(result file, modification time, its content) of each run of `cache_dir/runs`, newest first."""
    found = []
    for result_file in (cache_dir / "runs").glob(f"*/{RESULT_FILE}"):
        try:
            found.append((result_file, result_file.stat().st_mtime, json.loads(result_file.read_text())))
        except (OSError, ValueError):
            continue  # a run folder being written or damaged is simply not listed
    return sorted(found, key=lambda item: item[1], reverse=True)


def list_trained_runs(cache_dir: Path) -> list[TrainedRun]:
    """Runs of `cache_dir/runs` that finished with a model in our format, newest first."""
    runs = []
    for result_file, modified, result in _finished_runs(cache_dir):
        model_dir = Path(result.get("model_dir", ""))
        if not is_own_format(model_dir):
            continue
        runs.append(TrainedRun(result_file.parent.name, model_dir, datetime.fromtimestamp(modified),
                               (result.get("test") or {}).get("top1_accuracy"), result.get("settings", {})))
    return sorted(runs, key=lambda run: run.finished, reverse=True)


def estimate_seconds(settings: TrainingSettings, rows: int, cache_dir: Path, recent: int = RECENT_RUNS) -> float | None:
    """A run's duration on `rows` training rows, from this server's `recent` latest measured runs with the same
    tokenizer and attention: each run's start-up and finishing as they were, its tokenizing and its seconds per row
    and epoch scaled to these rows, epochs and embedding size; the median of those estimates, so that one run
    slowed by a loaded server does not set the figure. None before any such run (the live progress then measures
    it)."""
    estimates: list[float] = []
    for _, _, result in _finished_runs(cache_dir):
        measured, timing = result.get("settings", {}), result.get("timing")
        if not timing or (measured.get("tokenizer"), measured.get("attention")) != (settings.tokenizer,
                                                                                   settings.attention):
            continue
        try:
            scale = rows / max(timing["rows"], 1)
            per_row = timing["train"] / max(timing["rows_seen"], 1) * settings.embedding_dim / measured["embedding_dim"]
            estimates.append(timing["startup"] + timing["prepare"] * scale + per_row * rows * settings.epochs
                             + timing["finish"])
        except (KeyError, TypeError, ZeroDivisionError):
            continue  # a result written by an older version
        if len(estimates) == recent:
            break
    return float(statistics.median(estimates)) if estimates else None


def results_table(result: TrainingResult, default: Evaluation) -> list[dict[str, Any]]:
    """This run on validation and test next to the default model on the same test split."""
    return comparison_rows({"this run · validation": result.validation, "this run · test": result.test,
                            "default model · test": default})


def kept_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch whose weights the model holds: the lowest validation loss, the first on a tie, as the checkpoint
    callback keeps it; None before any validation."""
    validated = [e for e in history if e.get("val_loss") is not None]
    return int(min(validated, key=lambda e: e["val_loss"])["epoch"]) if validated else None


def much_weaker(result: TrainingResult, default: Evaluation, margin: float = 0.10) -> bool:
    """Whether this run's test top-1 is more than `margin` below the default model's on the same split."""
    return result.test.top1_accuracy < default.top1_accuracy - margin


def model_zip(model_dir: Path, name: str) -> bytes:
    """The model folder as a zip (JSON + safetensors), for download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_dir.iterdir()):
            archive.write(path, arcname=f"{name}/{path.name}")
    return buffer.getvalue()
