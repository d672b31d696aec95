"""Training in a child process: a run that completes, one that is stopped, one that crashes, one that is killed."""

import functools
import multiprocessing
import os
import signal
import time

import pytest

from nace_app.model.formats import load_model
from nace_app.model.opening import DataSet
from nace_app.settings.config import load_settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import ResolvedSource
from nace_app.training.core import TrainingSettings, probe_top3
from nace_app.training.jobs import DONE, FAILED, STOPPED, TrainingJob, TrainingQueue
from nace_app.training.process import CHILD_NICENESS, TrainingCrashed, train_in_child

SMALL = TrainingSettings(epochs=2, batch_size=16, embedding_dim=16, buckets=2000, patience=2)


pytestmark = pytest.mark.usefixtures("local_mlflow")  # runs log to the local MLflow store


@pytest.fixture(scope="module")
def tiny_data(tiny_frame):
    return DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)


def training_children() -> list[multiprocessing.Process]:
    """The training processes still running (MLflow's helper process outlives each run, by design)."""
    return [child for child in multiprocessing.active_children() if child.name == "nace-training"]


def kill_training_children() -> None:
    for child in training_children():
        os.kill(child.pid, signal.SIGKILL)


def failing_probe(ttc, labels):
    """A bug inside the child: raised at the first epoch's end."""
    raise ZeroDivisionError("a bug in the child")


def test_a_child_run_sends_its_progress_and_probes_and_returns_a_model_at_a_lower_priority_than_its_caller(
        tiny_data, tmp_path):
    events, niceness = [], []

    def progress(event) -> None:
        events.append(event)
        niceness.extend(os.getpriority(os.PRIO_PROCESS, child.pid) for child in training_children())

    result = train_in_child(tiny_data.splits, SMALL, tmp_path, progress=progress,
                            probe=functools.partial(probe_top3, texts=["bread", "taxi"]))
    assert set(niceness) == {min(os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS, 19)}  # the server's clicks go first
    kinds = [event.kind for event in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 2 and kinds[-1] == "finishing"
    probes = [event.payload for event in events if event.kind == "epoch"]
    assert len(probes[-1]) == 2 and len(probes[-1][0]) == 3  # top-3 of both probe texts
    assert load_model(result.model_dir).labels == result.labels
    assert result.timing.startup > 0 and result.timing.rows_seen == 2 * result.timing.rows
    assert not training_children()


def test_a_child_run_stops_when_asked_and_keeps_a_model(tiny_data, tmp_path):
    steps = []

    def progress(event):
        steps.extend([event.step] if event.kind == "step" else [])

    settings = TrainingSettings(**{**SMALL.to_dict(), "epochs": 20})
    result = train_in_child(tiny_data.splits, settings, tmp_path, progress=progress, should_stop=lambda: bool(steps))
    assert result.stopped_by_user and len(result.history) < settings.epochs
    assert load_model(result.model_dir).labels == result.labels


def test_a_user_error_in_the_child_is_raised_again_as_it_was(tiny_data, tmp_path):
    one_row = tiny_data.splits.train.head(1)
    splits = type(tiny_data.splits)(one_row, tiny_data.splits.validation, tiny_data.splits.test)
    with pytest.raises(NaceAppError, match="fewer than 2 rows") as raised:
        train_in_child(splits, SMALL, tmp_path)
    assert not isinstance(raised.value, TrainingCrashed)


def test_a_bug_in_the_child_is_one_line_and_the_caller_goes_on(tiny_data, tmp_path, capfd):
    with pytest.raises(TrainingCrashed, match="^the training process failed: ZeroDivisionError: a bug in the child$"):
        train_in_child(tiny_data.splits, SMALL, tmp_path, probe=failing_probe)
    assert "Traceback" in capfd.readouterr().err  # the child's traceback goes to the log
    assert not training_children()


def test_a_killed_child_is_reported_in_one_line(tiny_data, tmp_path):
    def kill_the_child(event):
        if event.kind == "start":
            kill_training_children()

    with pytest.raises(TrainingCrashed, match=r"^the training process was killed \(SIGKILL, perhaps out of memory\)$"):
        train_in_child(tiny_data.splits, SMALL, tmp_path, progress=kill_the_child)


def wait_for_steps(job: TrainingJob, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not job.snapshot().steps and job.alive and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_job_runs_in_a_child_and_leaves_the_servers_torch_settings_unchanged(tiny_data):
    import torch

    before = torch.get_float32_matmul_precision(), torch.get_num_threads()
    job = TrainingJob(tiny_data, SMALL, load_settings(), TrainingQueue(), probe_texts=["bread"]).start()
    job.join(timeout=300)
    assert job.state == DONE, job.error
    assert job.snapshot().probes and job.run.failure is None
    assert (torch.get_float32_matmul_precision(), torch.get_num_threads()) == before


def test_a_running_job_stopped_from_the_page_keeps_its_best_epoch(tiny_data):
    settings = TrainingSettings(**{**SMALL.to_dict(), "epochs": 30})
    job = TrainingJob(tiny_data, settings, load_settings(), TrainingQueue()).start()
    wait_for_steps(job)
    job.stop()
    job.join(timeout=300)
    assert job.state == STOPPED and job.result is not None and job.result.stopped_by_user
    assert len(job.result.history) < settings.epochs


def test_a_job_whose_child_is_killed_fails_in_one_line_and_the_next_job_runs(tiny_data):
    queue = TrainingQueue()
    job = TrainingJob(tiny_data, TrainingSettings(**{**SMALL.to_dict(), "epochs": 30}), load_settings(), queue).start()
    wait_for_steps(job)
    kill_training_children()
    job.join(timeout=60)
    assert job.state == FAILED and job.error.startswith("the training process was killed") and "\n" not in job.error
    after = TrainingJob(tiny_data, SMALL, load_settings(), queue).start()
    after.join(timeout=300)
    assert after.state == DONE, after.error
