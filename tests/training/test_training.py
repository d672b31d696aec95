"""The training core and background jobs: progress, stop, MLflow logging, the queue, shared models untouched."""

import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from nace_app.model.formats import load_model
from nace_app.model.opening import DataSet
from nace_app.settings.config import load_settings, tracking_uri
from nace_app.sources.resolve import ResolvedSource
from nace_app.training.core import TrainingSettings, train_model
from nace_app.training.jobs import DONE, QUEUED, STOPPED, JobRegistry, TrainingJob, TrainingQueue
from nace_app.training.runs import estimate_seconds, run_logged_training

SMALL = TrainingSettings(sample_size=None, epochs=2, batch_size=16, embedding_dim=16, vocab_size=400, patience=2)


pytestmark = pytest.mark.usefixtures("local_mlflow")  # runs log to the local MLflow store


@pytest.fixture(scope="module")
def tiny_data(tiny_frame):
    return DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)


def test_progress_events_and_a_model_in_our_format(tiny_data, tmp_path):
    events = []
    result = train_model(tiny_data.splits, SMALL, tmp_path, progress=events.append,
                         probe=lambda ttc, labels: labels[:1])
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 2 and kinds[-1] == "finishing"  # then measuring, saving
    assert events[-1].step == events[-1].total_steps and events[-1].epoch == 2
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, len(steps) + 1)) and steps[-1].step == steps[-1].total_steps
    epoch_event = next(e for e in events if e.kind == "epoch")
    assert {"val_loss", "val_accuracy"} <= set(epoch_event.metrics) and epoch_event.payload is not None
    assert (result.model_dir / "model.safetensors").is_file() and not list(result.model_dir.glob("*.pkl"))
    reloaded = load_model(result.model_dir)
    assert reloaded.training["data_fingerprint"] == tiny_data.fingerprint
    assert 0.0 <= result.test.top1_accuracy <= 1.0


def test_a_runs_validation_figures_are_the_saved_models_read_as_users_read_it(tiny_data, tmp_path):
    from nace_app.model.classifier import Classifier
    from nace_app.review.evaluation import evaluate_classifier

    result = train_model(tiny_data.splits, SMALL, tmp_path)
    saved = Classifier(load_model(result.model_dir), name="saved")
    assert result.validation == evaluate_classifier(saved, tiny_data.splits.validation)
    assert result.test == evaluate_classifier(saved, tiny_data.splits.test)
    best_epoch = min(result.history, key=lambda epoch: epoch["val_loss"])
    assert result.validation.top1_accuracy == pytest.approx(best_epoch["val_accuracy"])


def test_stop_flag_ends_the_run_and_keeps_the_best_checkpoint(tiny_data, tmp_path):
    steps = []

    def progress(event):
        if event.kind == "step":
            steps.append(event.step)

    settings = TrainingSettings(**{**SMALL.to_dict(), "epochs": 5})
    per_epoch = -(-tiny_data.splits.train.height // settings.batch_size)
    result = train_model(tiny_data.splits, settings, tmp_path, progress=progress,
                         should_stop=lambda: len(steps) > per_epoch + 2)
    assert result.stopped_by_user
    assert len(steps) < settings.epochs * per_epoch
    assert load_model(result.model_dir).labels == result.labels


def test_stop_at_the_first_step_still_validates_and_keeps_a_model(tiny_data, tmp_path):
    result = train_model(tiny_data.splits, SMALL, tmp_path, should_stop=lambda: True)
    assert result.stopped_by_user and len(result.history) == 1
    assert load_model(result.model_dir).labels == result.labels


def test_a_local_mlflow_run_has_params_metric_history_split_and_our_model_format_only(tiny_data, tmp_path):
    settings = load_settings()
    result, run = run_logged_training(tiny_data, SMALL, settings, tmp_path / "work")
    assert run.failure is None and tracking_uri(settings).startswith("sqlite:///")
    client = MlflowClient(tracking_uri=run.uri)
    assert len(client.get_metric_history(run.run_id, "val_loss")) == 2
    logged = client.get_run(run.run_id).data
    assert logged.params["embedding_dim"] == "16"
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"model", "split.json"} <= artifacts and "torchtextclassifiers_model" not in artifacts
    model_files = {"model/config.json", "model/model.safetensors", "model/calibration.json"}
    assert model_files <= {a.path for a in client.list_artifacts(run.run_id, "model")}
    assert result.library_dir is None  # writing the library's pickles would import it: only for an operator's MLflow


def test_local_mlflow_artifacts_go_to_the_cache_folder_not_the_working_folder(tiny_data, tmp_path):
    settings = load_settings()
    _, run = run_logged_training(tiny_data, SMALL, settings, tmp_path / "work")
    assert run.failure is None
    assert not (tmp_path / "mlruns").exists()  # the tests run in tmp_path
    assert any((settings.cache_dir / "mlartifacts").rglob("model.safetensors"))


def test_jobs_queue_when_the_server_is_busy_and_leave_the_shared_model_untouched(tiny_data):
    from nace_app.model.classifier import Classifier
    from nace_app.sources.resolve import embedded_model_dir

    shared = Classifier(load_model(embedded_model_dir()))
    queue = TrainingQueue(capacity=1)
    assert queue.acquire("someone-else", threading.Event())
    job = TrainingJob(tiny_data, SMALL, load_settings(), queue, probe_texts=["bread"]).start()
    while job.snapshot().queue_position != 1:
        time.sleep(0.05)
    assert job.state == QUEUED
    queue.release("someone-else")
    job.join(timeout=300)
    snapshot = job.snapshot()
    assert snapshot.state == DONE, snapshot.error
    assert len(snapshot.epochs) == 2 and snapshot.probes and snapshot.steps and snapshot.fraction == 1.0
    assert Classifier(shared.loaded).fingerprint == shared.fingerprint  # recomputed from the weights now


def test_two_queued_jobs_run_one_after_the_other_and_both_finish(tiny_data):
    queue = TrainingQueue(capacity=1)
    first = TrainingJob(tiny_data, SMALL, load_settings(), queue).start()
    second = TrainingJob(tiny_data, SMALL, load_settings(), queue).start()
    first.join(timeout=300)
    assert first.state == DONE, first.error
    second.join(timeout=300)
    assert second.state == DONE, second.error
    assert first.result.duration > 0 and second.snapshot().queue_position == 0


def test_the_epoch_train_loss_is_the_mean_of_that_epochs_step_losses(tiny_data):
    job = TrainingJob(tiny_data, SMALL, load_settings(), TrainingQueue()).start()
    job.join(timeout=300)
    snapshot = job.snapshot()
    per_epoch = snapshot.steps_per_epoch
    first_epoch = [loss for step, loss in snapshot.steps if step <= per_epoch]
    assert snapshot.epochs[0]["train_loss_epoch"] == pytest.approx(sum(first_epoch) / len(first_epoch))


def test_a_queued_job_can_be_stopped_without_running(tiny_data):
    queue = TrainingQueue(capacity=1)
    queue.acquire("busy", threading.Event())
    job = TrainingJob(tiny_data, SMALL, load_settings(), queue).start()
    job.stop()
    job.join(timeout=10)
    assert job.state == STOPPED and not job.alive and job.result is None


def test_a_queued_job_on_a_server_with_no_measured_run_gets_no_guessed_wait(tiny_data):
    queue, registry = TrainingQueue(capacity=1), JobRegistry()
    queue.acquire("busy", threading.Event())  # a run this registry does not know: not counted
    first = registry.add(TrainingJob(tiny_data, SMALL, load_settings(), queue).start())
    while queue.position(first.job_id) != 1:
        time.sleep(0.05)
    second = registry.add(TrainingJob(tiny_data, SMALL, load_settings(), queue).start())
    while queue.position(second.job_id) != 2:
        time.sleep(0.05)
    try:
        assert registry.seconds_before_start(first) == 0.0
        assert estimate_seconds(SMALL, tiny_data.splits.train.height, first.settings.cache_dir) is None  # a new server
        assert first.seconds_left() is None and registry.seconds_before_start(second) is None  # no guessed wait
    finally:
        for job in (first, second):
            job.stop()
            job.join(timeout=10)
    assert first.seconds_left() == 0.0


def test_a_logged_run_loads_back_through_a_runs_uri(tiny_data, tmp_path, monkeypatch):
    import pickle

    from nace_app.model.opening import open_model
    from nace_app.sources.resolve import resolve_model

    result, run = run_logged_training(tiny_data, SMALL, load_settings(), tmp_path / "work")
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("our format must not be unpickled"))
    monkeypatch.setenv("NACE_MODEL_URI", f"runs:/{run.run_id}/model")
    settings = load_settings()
    opened = open_model(None, settings, allow_pickle=False)
    source = opened.source
    assert source.uri.startswith("runs:/") and opened.classifier.labels == result.labels
    assert resolve_model(settings).local_path == source.local_path  # cached: runs never change


def test_an_unknown_mlflow_run_is_an_error(monkeypatch):
    from nace_app.settings.errors import NaceAppError
    from nace_app.sources.resolve import resolve_model

    monkeypatch.setenv("NACE_MODEL_URI", "runs:/0123456789abcdef/model")
    with pytest.raises(NaceAppError, match="unavailable"):
        resolve_model(load_settings())


def test_a_job_past_its_last_step_says_it_is_measuring_and_saving():
    from nace_app.training.jobs import RUNNING, JobSnapshot

    training = JobSnapshot("job", RUNNING, 0, 96, 96, 3, 9.0, [], [{"epoch": e} for e in (1, 2, 3)], [], None)
    finishing = JobSnapshot("job", RUNNING, 0, 96, 96, 3, 12.0, [], [{"epoch": e} for e in (1, 2, 3)], [], None, True)
    assert training.label.startswith("Epoch 3 of 3 · step 96 of 96")
    assert finishing.label == ("Trained in 3 epochs · measuring the validation and test splits and saving the model · "
                               "12 s elapsed")


def test_train_model_writes_calibration_json_fitted_on_the_calibrate_part_of_the_shifted_text(tiny_data, tmp_path):
    import numpy as np

    from nace_app.model.classifier import Classifier
    from nace_app.review.calibration import CALIBRATE_PART, Calibration, fit_temperature, shifted_text
    from nace_app.review.conformal import true_indices

    result = train_model(tiny_data.splits, SMALL, tmp_path)
    written = Calibration.load(result.model_dir)
    classifier = Classifier(load_model(result.model_dir))
    assert classifier.temperature == written.temperature and "calibrate part" in written.fitted_on
    part = shifted_text(CALIBRATE_PART)
    truth = true_indices(classifier.labels, part["code"].to_list())
    assert written.rows == int((truth >= 0).sum()) == len(written.scores)
    logits = classifier.logits(part["label"].to_list())
    assert written.temperature == fit_temperature(logits, truth)
    np.testing.assert_allclose(classifier.predict_proba(["bakery"]),
                               _softmax(classifier.logits(["bakery"]).astype(np.float64) / written.temperature))


def _softmax(logits):
    import numpy as np

    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_a_run_saved_into_a_folder_of_an_earlier_run_is_calibrated_afresh(tiny_data, tmp_path):
    first = train_model(tiny_data.splits, SMALL, tmp_path / "one", model_dir=tmp_path / "model")
    second = train_model(tiny_data.splits, TrainingSettings(**{**SMALL.to_dict(), "seed": 7}), tmp_path / "two",
                         model_dir=tmp_path / "model")
    assert second.model_dir == first.model_dir and load_model(second.model_dir).calibration is not None
