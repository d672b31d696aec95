"""MLflow tracking never holds training up: a closed port, and a real tracking server killed mid-run and restarted."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nace_app.app.serving import free_port
from nace_app.model.formats import load_model
from nace_app.model.opening import DataSet
from nace_app.settings.config import load_settings
from nace_app.sources.resolve import ResolvedSource
from nace_app.training.core import TrainingSettings
from nace_app.training.runs import run_logged_training
from nace_app.training.tracking import EXPERIMENT, FAIL_FAST_HTTP, FINAL_STATUS_SECONDS, HELPER_NICENESS, RETRY_DELAYS
from tests.conftest import closed_port_endpoint
from tests.training.test_training import SMALL


@pytest.fixture(scope="module")
def tiny_data(tiny_frame):
    return DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)


@pytest.fixture(autouse=True)
def process_wide_mlflow_settings_restored():
    """RunLogger turns MLflow's HTTP retries down for the whole process: each test gets the environment back."""
    saved = {name: os.environ.pop(name, None) for name in FAIL_FAST_HTTP}
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


class TrackingServer:
    """MLflow's own tracking server app on a real local port; stopped, nothing listens there until `start` again."""

    def __init__(self, folder: Path):
        from mlflow.server import app
        from mlflow.server.handlers import initialize_backend_stores
        from mlflow.tracking._tracking_service import utils as client_defaults

        with pytest.MonkeyPatch.context() as undo:  # setting up the server's store also sets the client's default URI
            undo.setattr(client_defaults, "_tracking_uri", client_defaults._tracking_uri)
            undo.setenv("MLFLOW_TRACKING_URI", "")
            initialize_backend_stores(f"sqlite:///{folder / 'mlflow.db'}", None, str(folder / "artifacts"))
        self.app = app
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class OneRequestPerConnection(WSGIRequestHandler):
            protocol_version = "HTTP/1.0"  # no kept-alive connection outlives `stop`

        if self._server is None:
            self._server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                       request_handler=OneRequestPerConnection)
            threading.Thread(target=self._server.serve_forever, name="mlflow-server", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for_a_running_run(self, timeout: float = 30.0) -> None:
        client = MlflowClient(tracking_uri=self.uri)
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                experiment = client.get_experiment_by_name(EXPERIMENT)
                if experiment and client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
                    return
            except MlflowException as exc:  # a slow answer on a loaded machine: ask again
                last_error = exc
            time.sleep(0.1)
        pytest.fail(f"no RUNNING run appeared on {self.uri} within {timeout:.0f} s (last error: {last_error})")


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory, migrated_mlflow_store):
    folder = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(migrated_mlflow_store, folder / "mlflow.db")
    server = TrackingServer(folder)
    server.start()
    yield server
    server.stop()


def test_a_closed_tracking_port_costs_training_nothing_and_the_logger_gives_up_after_its_retries(tiny_data, tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_endpoint())
    result, run = run_logged_training(tiny_data, SMALL, load_settings(), tmp_path / "work")
    assert result.model_dir.is_dir() and len(result.history) == SMALL.epochs
    assert run.close(timeout=FINAL_STATUS_SECONDS), run.failure  # the logger's thread has ended
    delivery = run.delivery()
    assert delivery.gave_up.record == "the run's creation" and delivery.gave_up.attempts == len(RETRY_DELAYS) + 1
    per_attempt = float(FAIL_FAST_HTTP["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    assert delivery.gave_up.seconds < sum(RETRY_DELAYS) + delivery.gave_up.attempts * per_attempt
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # not MLflow's 7 retries, about 4 minutes a call
    assert delivery.sent == 0 and delivery.pending == 0 and delivery.final_status is None and run.run_id is None
    assert run.failure.startswith("MLflow logging failed: no run was created") and "\n" not in run.failure


def test_a_tracking_server_killed_after_epoch_1_neither_stops_training_nor_leaves_the_run_running(
        tracking_server, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    settings = TrainingSettings(**{**SMALL.to_dict(), "epochs": 3})
    epochs, steps_after_the_kill = [], []

    def progress(event) -> None:
        if event.kind == "step" and epochs:
            steps_after_the_kill.append(event.step)
        if event.kind == "epoch":
            epochs.append(event.epoch)
            if event.epoch == 1:
                tracking_server.wait_for_a_running_run()  # so that the kill interrupts a live run
                tracking_server.stop()

    try:
        result, run = run_logged_training(tiny_data, settings, load_settings(), tmp_path / "work", progress=progress)
    finally:
        tracking_server.start()
    assert epochs == [1, 2, 3] and steps_after_the_kill and len(result.history) == 3 and result.model_dir.is_dir()
    assert run.failure.startswith("MLflow logging failed:") and "\n" not in run.failure
    assert run.close(timeout=FINAL_STATUS_SECONDS), run.failure  # the final status reaches the restarted server
    status = MlflowClient(tracking_uri=tracking_server.uri).get_run(run.run_id).info.status
    assert status == run.delivery().final_status == "FAILED"  # some epochs' metrics never arrived


def test_an_operators_tracking_server_also_gets_the_library_format_which_the_library_loads(
        tracking_server, tiny_data, tmp_path, monkeypatch):
    from torchTextClassifiers import torchTextClassifiers

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    result, run = run_logged_training(tiny_data, SMALL, load_settings(), tmp_path / "work")
    assert run.close(timeout=FINAL_STATUS_SECONDS), run.failure
    client = MlflowClient(tracking_uri=tracking_server.uri)
    folder = Path(client.download_artifacts(run.run_id, "torchtextclassifiers_model", str(tmp_path / "artifacts")))
    assert {"metadata.pkl", "tokenizer.pkl", "model_checkpoint.ckpt"} <= {p.name for p in folder.iterdir()}
    library = torchTextClassifiers.load(folder, device="cpu")
    ours = load_model(result.model_dir)
    assert library.tokenizer.word_to_id == ours.tokenizer.word_to_id


def test_passwords_in_the_tracking_and_data_uris_reach_no_output_link_parameter_artifact_or_file(
        tracking_server, tiny_frame, tmp_path, monkeypatch, capfd):
    import json

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri.replace("http://", "http://trainer:TRACKpw-1@"))
    data = DataSet(ResolvedSource("https://reader:DATApw-2@example.org/x.parquet",
                                  "https://reader:DATApw-2@example.org/x.parquet", None, True), tiny_frame)
    result, run = run_logged_training(data, SMALL, load_settings(), tmp_path / "work")
    assert run.close(timeout=FINAL_STATUS_SECONDS), run.failure
    client = MlflowClient(tracking_uri=tracking_server.uri)
    logged = client.get_run(run.run_id)
    split = Path(client.download_artifacts(run.run_id, "split.json", str(tmp_path / "artifacts"))).read_text()
    printed = capfd.readouterr()
    everything = [printed.out, printed.err, run.link, json.dumps(logged.data.params), split,
                  (tmp_path / "work" / "result.json").read_text()]
    for text in everything:
        assert "TRACKpw-1" not in text and "DATApw-2" not in text
    assert logged.data.params["data_uri"] == "https://reader:***@example.org/x.parquet"
    assert "View run" not in printed.out  # MLflow's own link lines would carry the password


def test_a_run_whose_server_stays_down_past_the_final_window_is_reported_dropped_and_ended_by_the_next_run(
        tracking_server, tiny_data, tmp_path, monkeypatch):
    from nace_app.training import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    monkeypatch.setattr(tracking, "FINAL_STATUS_SECONDS", 2.0)  # the 30 s window, shortened for the test

    def progress(event) -> None:
        if event.kind == "epoch" and event.epoch == 1:
            tracking_server.wait_for_a_running_run()
            tracking_server.stop()

    try:
        _, run = run_logged_training(tiny_data, SMALL, load_settings(), tmp_path / "work", progress=progress)
        run.close(timeout=10)
        report = run.final_report()
    finally:
        tracking_server.start()
    assert report.startswith("MLflow logging failed: ") and "records were dropped" in report and "\n" not in report
    assert f"run {run.run_id} stays RUNNING in MLflow until the next training run" in report
    client = MlflowClient(tracking_uri=tracking_server.uri)
    assert client.get_run(run.run_id).info.status == "RUNNING"
    following = tracking.RunLogger(load_settings(), "the next run")
    assert following.finish(), following.failure
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_the_logging_process_never_imports_mlflow_whose_calls_run_in_one_niced_helper_process(tmp_path):
    """In a fresh interpreter (the server's case): two runs logged, MLflow never imported there, one helper for both."""
    import json
    import subprocess
    import sys

    script = f"""
import json, multiprocessing, os, sys
from dataclasses import replace
from nace_app.settings.config import load_settings
from nace_app.training.tracking import RunLogger
settings = replace(load_settings(), cache_dir=__import__("pathlib").Path({str(tmp_path)!r}))
ids = []
for name in ("first", "second"):
    run = RunLogger(settings, name)
    run.log_params({{"epochs": 3}})
    run.log_metrics({{"val_accuracy": 0.5}}, step=1)
    assert run.finish(), run.failure
    ids.append(run.run_id)
helpers = [(p.name, os.getpriority(os.PRIO_PROCESS, p.pid)) for p in multiprocessing.active_children()]
print(json.dumps({{"ids": ids, "mlflow": "mlflow" in sys.modules, "helpers": helpers}}))
"""
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout.strip().splitlines()[-1])
    niced = min(os.getpriority(os.PRIO_PROCESS, 0) + HELPER_NICENESS, 19)  # its logging waits for the server's clicks
    assert found["mlflow"] is False and found["helpers"] == [["mlflow-tracker", niced]]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run_id in found["ids"]:
        logged = client.get_run(run_id)
        assert logged.info.status == "FINISHED" and logged.data.params["epochs"] == "3"
        assert logged.data.metrics["val_accuracy"] == 0.5
