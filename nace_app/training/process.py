"""A training run in a child process (multiprocessing spawn), so that the caller's interpreter never shares its
lock, its memory or torch's process-wide settings with training.

The child runs `train_model` and sends its progress events, then its result, through a queue; the parent hands
each event to its own `progress` callback (MLflow logging, the page's snapshots) and turns its `should_stop`
into an event the child polls. A child that raises a `NaceAppError` raises it again here; a child that crashes,
is killed or exits without a result raises `TrainingCrashed` with one line (the child's traceback, if any, goes
to stderr, the server's log). The child also stops by itself when its parent is gone.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nace_app.settings.errors import NaceAppError, first_line
from nace_app.training.core import ProgressEvent, TrainingResult, TrainingSettings

CHILD_THREADS = 1  # torch threads of the child: a second thread saves little at this size and takes the server's core
POLL_SECONDS = 0.2
# A click waits for its answer, a run only for its curves: where the child shares a core with the server, the
# server's sessions go first (benchmarks/bench_load.py). Alone, the run takes what it did.
CHILD_NICENESS = 10


class TrainingCrashed(NaceAppError):
    """The training process ended without a result (an unexpected error, killed, out of memory)."""


def _child_main(messages: Any, stop: Any, parent_pid: int, arguments: dict[str, Any]) -> None:
    os.nice(CHILD_NICENESS)
    import torch

    from nace_app.training.core import train_model

    torch.set_num_threads(CHILD_THREADS)

    def should_stop() -> bool:
        return stop.is_set() or os.getppid() != parent_pid

    try:
        startup_cpu = time.process_time()  # this process's CPU so far: its start-up, torch's import, the data sent
        result = train_model(**arguments, progress=lambda event: messages.put(("event", event)),
                             should_stop=should_stop)
        messages.put(("result", dataclasses.replace(result, timing=dataclasses.replace(result.timing,
                                                                                        startup_cpu=startup_cpu))))
    except NaceAppError as exc:
        messages.put(("error", str(exc)))
    except BaseException as exc:  # reported in one line by the parent; the traceback goes to the log
        traceback.print_exc()
        messages.put(("crash", f"{type(exc).__name__}: {first_line(exc)}"))


def _ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the training process was killed ({name}{', perhaps out of memory' if name == 'SIGKILL' else ''})"
    return f"the training process ended without a result (exit code {exitcode})"


def train_in_child(
    splits: Any,
    settings: TrainingSettings,
    workdir: Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    probe: Callable[[Any, list[str]], Any] | None = None,
    model_dir: Path | None = None,
    extra_rows: Any = None,
    stopping_frame: Any = None,
    library_format: bool = False,
) -> TrainingResult:
    """`train_model`'s contract, run in a spawned child; `probe` must be picklable (a module-level function or a
    `functools.partial` of one). The result's `timing.startup` is the child's start-up, measured here."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    stop = context.Event()
    arguments = {"splits": splits, "settings": settings, "workdir": workdir, "probe": probe, "model_dir": model_dir,
                 "extra_rows": extra_rows, "stopping_frame": stopping_frame, "library_format": library_format}
    started = time.monotonic()
    startup = None
    child = context.Process(target=_child_main, args=(messages, stop, os.getpid(), arguments),
                            name="nace-training", daemon=True)
    child.start()
    try:
        while True:
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
            try:
                kind, value = messages.get(timeout=POLL_SECONDS if child.is_alive() else 1.0)
            except queue.Empty:
                if child.is_alive():
                    continue
                raise TrainingCrashed(_ended(child.exitcode)) from None
            if kind == "event":
                if startup is None:
                    startup = time.monotonic() - started - value.elapsed
                if progress is not None:
                    progress(value)
            elif kind == "result":
                timing = dataclasses.replace(value.timing, startup=max(startup or 0.0, 0.0))
                return dataclasses.replace(value, timing=timing)
            elif kind == "error":
                raise NaceAppError(value)
            else:
                raise TrainingCrashed(f"the training process failed: {value}")
    finally:
        stop.set()  # a callback that raised leaves the child running: end it cleanly first
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
        messages.close()
