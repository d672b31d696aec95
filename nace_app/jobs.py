"""Training runs in background threads, with MLflow logging, a server-wide limit on concurrent runs and a queue.

A job never touches a model that other sessions predict with: it builds its own, and shares only snapshots of
its progress. Its thread never calls Streamlit; the page polls `TrainingJob.snapshot()`.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nace_app.config import Settings
from nace_app.errors import NaceAppError
from nace_app.tracking import RunLogger
from nace_app.training import ProgressEvent, TrainingResult, TrainingSettings, train_model

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"


def probe_top3(ttc: Any, labels: list[str], texts: list[str]) -> list[list[tuple[str, float]]]:
    """Top-3 codes of a model under training (not a shared one), for the probe panel."""
    import torch

    if not texts:
        return []
    tokens = ttc.tokenizer.tokenize(texts)
    with torch.no_grad():
        logits = ttc.pytorch_model(tokens.input_ids, tokens.attention_mask, torch.empty((len(texts), 0)))
    probabilities = torch.softmax(logits.double(), dim=1)
    values, indices = torch.topk(probabilities, k=min(3, len(labels)), dim=1)
    return [[(labels[i], float(v)) for i, v in zip(row_i.tolist(), row_v.tolist(), strict=True)]
            for row_i, row_v in zip(indices, values, strict=True)]


def run_logged_training(data, training: TrainingSettings, settings: Settings, workdir: Path, progress=None,
                        should_stop=None, probe=None, run_name: str = "training",
                        model_dir: Path | None = None, extra_rows=None,
                        stopping_frame=None) -> tuple[TrainingResult, RunLogger]:
    """Train and log everything to MLflow: parameters, per-epoch metrics, the split, both model formats."""
    run = RunLogger(settings, run_name)
    run.log_params({**training.to_dict(), "data_uri": data.source.uri, "data_rows": data.frame.height})

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "epoch":
            run.log_metrics(event.metrics, step=event.epoch)
        if progress is not None:
            progress(event)

    try:
        result = train_model(data.splits, training, workdir, progress=on_event, should_stop=should_stop, probe=probe,
                             model_dir=model_dir, extra_rows=extra_rows, stopping_frame=stopping_frame)
    except BaseException:
        run.finish("FAILED")
        raise
    run.log_params({"output_dim_used": result.output_dim})
    run.log_dict({**data.splits.describe(), "data_uri": data.source.uri, "data_fingerprint": data.fingerprint},
                 "split.json")
    run.log_metrics({"validation": result.validation, "test": result.test})
    run.log_artifacts(result.model_dir, "model")
    run.log_artifacts(result.library_dir, "torchtextclassifiers_model")
    run.finish("KILLED" if result.stopped_by_user else "FINISHED")
    return result, run


class TrainingQueue:
    """At most `capacity` runs at once per server; the others wait in arrival order."""

    def __init__(self, capacity: int = 1):
        self.capacity = max(1, capacity)
        self._condition = threading.Condition()
        self._running: set[str] = set()
        self._waiting: list[str] = []

    def position(self, job_id: str) -> int:
        """1 for the next job to run; 0 when not waiting."""
        with self._condition:
            return self._waiting.index(job_id) + 1 if job_id in self._waiting else 0

    def acquire(self, job_id: str, cancelled: threading.Event) -> bool:
        with self._condition:
            self._waiting.append(job_id)
            try:
                while not (len(self._running) < self.capacity and self._waiting[0] == job_id):
                    if cancelled.is_set():
                        return False
                    self._condition.wait(timeout=0.2)
                self._running.add(job_id)
                return True
            finally:
                self._waiting.remove(job_id)
                self._condition.notify_all()

    def release(self, job_id: str) -> None:
        with self._condition:
            self._running.discard(job_id)
            self._condition.notify_all()


_ids = itertools.count(1)


@dataclass
class TrainingJob:
    """One run: `start()` it, `stop()` it, read `snapshot()` from any thread."""

    data: Any
    training: TrainingSettings
    settings: Settings
    queue: TrainingQueue
    probe_texts: list[str] = field(default_factory=list)
    job_id: str = field(default_factory=lambda: f"run-{time.strftime('%Y%m%d-%H%M%S')}-{next(_ids)}")

    def __post_init__(self) -> None:
        self.state = QUEUED
        self.steps: list[tuple[int, float]] = []
        self.epochs: list[dict[str, float]] = []
        self.probes: list[dict[str, Any]] = []
        self.step = 0
        self.total_steps = 0
        self.elapsed = 0.0
        self.result: TrainingResult | None = None
        self.error: str | None = None
        self.run: RunLogger | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"training-{self.job_id}", daemon=True)
        self.workdir = self.settings.cache_dir / "runs" / self.job_id

    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _on_event(self, event: ProgressEvent) -> None:
        with self._lock:
            self.step, self.total_steps, self.elapsed = event.step, event.total_steps, event.elapsed
            if event.kind == "step":
                self.steps.append((event.step, event.metrics["train_loss_step"]))
            elif event.kind == "epoch":
                self.epochs.append({"epoch": event.epoch, **event.metrics})
                if event.payload is not None:
                    self.probes.append({"epoch": event.epoch, "top3": event.payload})

    def _main(self) -> None:
        if not self.queue.acquire(self.job_id, self._stop):
            self.state = STOPPED
            return
        self.state = RUNNING
        try:
            result, run = run_logged_training(
                self.data, self.training, self.settings, self.workdir, progress=self._on_event,
                should_stop=self._stop.is_set,
                probe=lambda ttc, labels: probe_top3(ttc, labels, self.probe_texts), run_name=self.job_id)
            self.result, self.run = result, run
            self.state = STOPPED if result.stopped_by_user else DONE
        except NaceAppError as exc:
            self.error, self.state = str(exc), (STOPPED if self._stop.is_set() else FAILED)
        except Exception as exc:  # shown on the page; the traceback goes to the server log
            traceback.print_exc()
            self.error, self.state = f"{type(exc).__name__}: {exc}", FAILED
        finally:
            self.queue.release(self.job_id)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "job_id": self.job_id,
                "state": self.state,
                "queue_position": self.queue.position(self.job_id),
                "step": self.step,
                "total_steps": self.total_steps,
                "elapsed": self.elapsed,
                "steps": list(self.steps),
                "epochs": list(self.epochs),
                "probes": list(self.probes),
                "error": self.error,
            }
