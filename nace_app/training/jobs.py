"""Training runs in the background, with a server-wide limit on concurrent runs, a queue and a registry.

Each job's thread waits in the queue, then trains in a child process (`process.train_in_child`) and logs to
MLflow from here: the server's interpreter keeps serving. A job never touches a model that other sessions
predict with, and shares only snapshots of its progress. Its thread never calls Streamlit; the page polls
`TrainingJob.snapshot()`.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from nace_app.settings.config import Settings
from nace_app.settings.errors import NaceAppError
from nace_app.training.core import ProgressEvent, TrainingResult, TrainingSettings, probe_top3
from nace_app.training.runs import estimate_seconds, run_logged_training
from nace_app.training.tracking import RunLogger

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"


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
    extra_rows: Any = None
    job_id: str = field(default_factory=lambda: f"{time.strftime('%H%M%S')}-{next(_ids)}")

    def __post_init__(self) -> None:
        self.state = QUEUED
        self.steps: list[tuple[int, float]] = []
        self.epochs: list[dict[str, float]] = []
        self.probes: list[dict[str, Any]] = []
        self.step = 0
        self.total_steps = 0
        self.elapsed = 0.0
        self.finishing = False  # training is over; the splits are being measured and the model saved
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
            elif event.kind == "finishing":
                self.finishing = True

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def _main(self) -> None:
        if not self.queue.acquire(self.job_id, self._stop):
            self._set(state=STOPPED)
            return
        self._set(state=RUNNING)
        try:
            result, run = run_logged_training(
                self.data, self.training, self.settings, self.workdir, progress=self._on_event,
                should_stop=self._stop.is_set,
                probe=functools.partial(probe_top3, texts=self.probe_texts), run_name=self.job_id,
                extra_rows=self.extra_rows, in_child=True)
            self._set(result=result, run=run, state=STOPPED if result.stopped_by_user else DONE)
        except NaceAppError as exc:
            self._set(error=str(exc), state=STOPPED if self._stop.is_set() else FAILED)
        except Exception as exc:  # shown on the page; the traceback goes to the server log
            traceback.print_exc()
            self._set(error=f"{type(exc).__name__}: {exc}", state=FAILED)
        finally:
            self.queue.release(self.job_id)

    def seconds_left(self) -> float | None:
        """About how long this run still takes: from its own pace once it has steps, else from this server's measured
        estimate; None before any run was measured."""
        snap = self.snapshot()
        if snap.state not in (QUEUED, RUNNING):
            return 0.0
        if snap.seconds_left is not None:
            return snap.seconds_left
        estimate = estimate_seconds(self.training, self.data.splits.train.height, self.settings.cache_dir)
        return None if estimate is None else max(estimate - snap.elapsed, 0.0)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self.job_id, self.state, self.queue.position(self.job_id), self.step,
                               max(self.total_steps, 1), self.training.epochs, self.elapsed, list(self.steps),
                               list(self.epochs), list(self.probes), self.error, self.finishing)


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's progress, with the arithmetic the page shows."""

    job_id: str
    state: str
    queue_position: int
    step: int
    total_steps: int
    epochs_planned: int
    elapsed: float
    steps: list[tuple[int, float]]
    epochs: list[dict[str, float]]
    probes: list[dict[str, Any]]
    error: str | None
    finishing: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return max(self.total_steps // max(self.epochs_planned, 1), 1)

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == DONE else min(self.step / self.total_steps, 1.0)

    @property
    def epoch(self) -> int:
        return min(self.step // self.steps_per_epoch + 1, self.epochs_planned)

    @property
    def seconds_left(self) -> float | None:
        if self.state != RUNNING or self.step == 0:
            return None
        return self.elapsed / self.fraction - self.elapsed

    @property
    def label(self) -> str:
        if self.state == RUNNING and self.finishing:
            return (f"Trained in {len(self.epochs)} epochs · measuring the validation and test splits and saving the "
                    f"model · {self.elapsed:.0f} s elapsed")
        text = (f"Epoch {self.epoch} of {self.epochs_planned} · step {self.step:,} of {self.total_steps:,} · "
                f"{self.elapsed:.0f} s elapsed")
        if self.seconds_left is not None:
            text += f" · about {self.seconds_left:.0f} s left"
        return text if self.state in (QUEUED, RUNNING) else f"{self.state} · {text}"


def probe_lines(text: str, limit: int = 8) -> list[str]:
    """The probe descriptions typed one per line, blank lines dropped, at most `limit`."""
    return [line.strip() for line in text.splitlines() if line.strip()][:limit]


class JobRegistry:
    """The server's jobs by id, so that a reloaded page (a new session) can reattach to a running one."""

    def __init__(self) -> None:
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    def add(self, job: TrainingJob) -> TrainingJob:
        with self._lock:
            self._jobs[job.job_id] = job
        return job

    def get(self, job_id: str | None) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def unfinished(self) -> list[TrainingJob]:
        with self._lock:
            return [job for job in self._jobs.values() if job.state in (QUEUED, RUNNING)]

    def seconds_before_start(self, job: TrainingJob) -> float | None:
        """About how long a queued `job` waits: what is left of the runs ahead of it in its queue (running, or
        queued before it) that this server knows."""
        position = job.queue.position(job.job_id)
        ahead = [other for other in self.unfinished() if other is not job and other.queue is job.queue
                 and (other.state == RUNNING or 0 < other.queue.position(other.job_id) < position)]
        left = [other.seconds_left() for other in ahead]
        return None if None in left else sum(left)
