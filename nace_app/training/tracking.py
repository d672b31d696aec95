"""MLflow logging, explicit (never autolog, which would patch every session's trainer) and never in training's way.

The store is `MLFLOW_TRACKING_URI` when set, else a SQLite database under the cache directory. Every call goes
through `MlflowClient` with an explicit run id, so concurrent runs in one process cannot mix their logs.

Delivery contract: the training loop only enqueues; one background thread per run sends the records in order.
A record that fails is retried after each of `RETRY_DELAYS`, then dropped; while MLflow keeps failing, later
records get one attempt each, so a server that comes back receives the rest. A run with dropped records ends
FAILED, not FINISHED: its record in MLflow is incomplete (the training itself succeeded, and its model is in the
cache folder). The final status is retried for `FINAL_STATUS_SECONDS`, so a server that comes back soon does not
keep a run RUNNING; a run whose end never reached MLflow is noted in `<cache>/mlflow-unfinished/`, and the next
run logged to the same server marks it FAILED. `final_report` says in one line what was lost once the logger
ends. MLflow's own HTTP retries (7 with backoff, about 4 minutes a call) are turned down to `FAIL_FAST_HTTP` unless
those variables are set in the environment.

MLflow itself runs in one helper process per process that logs (`_Tracker`): importing it costs 4 CPU-s, and
creating a new SQLite store 5 more, which in the server's interpreter held up every session's clicks at a
workshop's first training run. The records' senders call the helper's plain-data operations (`_MlflowCalls`).

Passwords: MLflow's own "View run … at" lines (which carry the tracking URI's password) are silenced, the link
is redacted, and every parameter and logged dictionary passes through the redactor before it is sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nace_app.settings.config import Settings, redact_text, redact_uri, tracking_uri
from nace_app.settings.errors import first_line

logger = logging.getLogger(__name__)

EXPERIMENT = "nace-explorer"
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th attempt at one record
FINAL_STATUS_SECONDS = 30.0  # how long the final status is retried after training
FLUSH_SECONDS = 5.0  # how long `finish` waits for a logger that MLflow no longer answers
FAIL_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
SILENT_MLFLOW = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # its run links would print the URI's password


@dataclass(frozen=True)
class GiveUp:
    """The first record the logger stopped retrying: after how many attempts, over how long, and why."""

    record: str
    attempts: int
    seconds: float
    error: str

    def __str__(self) -> str:
        return f"gave up on {self.record} after {self.attempts} attempts in {self.seconds:.1f} s: {self.error}"


@dataclass(frozen=True)
class Delivery:
    """What has reached MLflow so far; `final_status` is the status MLflow holds once the last record is sent."""

    sent: int
    dropped: int
    pending: int
    final_status: str | None
    gave_up: GiveUp | None


@dataclass(frozen=True)
class _Record:
    name: str
    send: Callable[[], None]  # calls the helper process (`_Tracker`)
    final: bool = False
    needs_run: bool = True



def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def _backoff(total: float) -> tuple[float, ...]:
    """Delays of 0.5 s doubling up to 2 s, adding up to at most `total` seconds."""
    delays: list[float] = []
    while sum(delays) + (delay := min(0.5 * 2 ** len(delays), 2.0)) <= total:
        delays.append(delay)
    return tuple(delays)


class TrackingError(Exception):
    """An MLflow call that failed in the helper process; the message is the helper's "Type: first line"."""


class _MlflowCalls:
    """What `RunLogger` asks of MLflow, in plain data (no MLflow object crosses the process boundary)."""

    def __init__(self) -> None:
        from mlflow.tracking import MlflowClient

        self._client_type = MlflowClient
        self._clients: dict[str, Any] = {}

    def _client(self, uri: str):
        if uri not in self._clients:
            self._clients[uri] = self._client_type(tracking_uri=uri)
        return self._clients[uri]

    def experiment_id(self, uri: str, name: str, artifact_location: str | None) -> str:
        experiment = self._client(uri).get_experiment_by_name(name)
        return experiment.experiment_id if experiment else self._client(uri).create_experiment(
            name, artifact_location=artifact_location)

    def create_run(self, uri: str, experiment_id: str, run_name: str) -> str:
        return self._client(uri).create_run(experiment_id, run_name=run_name).info.run_id

    def status(self, uri: str, run_id: str) -> str:
        return self._client(uri).get_run(run_id).info.status

    def set_terminated(self, uri: str, run_id: str, status: str) -> None:
        self._client(uri).set_terminated(run_id, status)

    def log_params(self, uri: str, run_id: str, pairs: list[tuple[str, str]]) -> None:
        from mlflow.entities import Param

        self._client(uri).log_batch(run_id, params=[Param(key, value) for key, value in pairs])

    def log_metrics(self, uri: str, run_id: str, rows: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        self._client(uri).log_batch(run_id, metrics=[Metric(*row) for row in rows])

    def log_dict(self, uri: str, run_id: str, data: dict[str, Any], name: str) -> None:
        self._client(uri).log_dict(run_id, data, name)

    def log_artifacts(self, uri: str, run_id: str, folder: str, artifact_path: str) -> None:
        self._client(uri).log_artifacts(run_id, folder, artifact_path)


HELPER_NICENESS = 10  # the helper's logging waits for clicks: on a shared core it takes what the server leaves


def _serve_calls(connection) -> None:
    """The helper process: one call at a time, until the logging process closes its end."""
    os.nice(HELPER_NICENESS)
    calls = None
    while True:
        try:
            environment, name, args = connection.recv()
        except EOFError:
            return
        os.environ.update(environment)  # MLflow reads its HTTP settings at each request
        try:
            calls = calls or _MlflowCalls()
            connection.send((True, getattr(calls, name)(*args)))
        except Exception as exc:  # noqa: BLE001  # sent back as text: an MLflow exception may not unpickle
            connection.send((False, f"{type(exc).__name__}: {first_line(exc)}"))


class _Tracker:
    """The helper process of this process, started at its first call; started again if it died."""

    _lock = threading.Lock()  # one call at a time on the pipe, whichever run's thread sends it
    _connection = None
    _process = None

    @classmethod
    def call(cls, environment: dict[str, str], name: str, *args: Any) -> Any:
        with cls._lock:
            if cls._process is None or not cls._process.is_alive():
                context = multiprocessing.get_context("spawn")
                cls._connection, theirs = context.Pipe()
                cls._process = context.Process(target=_serve_calls, args=(theirs,), name="mlflow-tracker", daemon=True)
                cls._process.start()
                theirs.close()
            try:
                cls._connection.send((environment, name, args))
                succeeded, answer = cls._connection.recv()
            except (EOFError, OSError) as exc:
                cls._process = None
                raise TrackingError(f"the MLflow helper process ended: {type(exc).__name__}") from exc
        if not succeeded:
            raise TrackingError(answer)
        return answer


class RunLogger:
    """One MLflow run, sent from its own thread; `failure` says in one line what did not reach MLflow."""

    def __init__(self, settings: Settings, run_name: str):
        self.uri = tracking_uri(settings)
        self.artifact_location = None if settings.mlflow_tracking_uri else (settings.cache_dir / "mlartifacts").resolve().as_uri()
        if self.uri.startswith(("http://", "https://")):
            for name, value in FAIL_FAST_HTTP.items():
                os.environ.setdefault(name, value)
        os.environ.update(SILENT_MLFLOW)
        self._environment = {name: os.environ[name] for name in (*FAIL_FAST_HTTP, *SILENT_MLFLOW) if name in os.environ}
        self._secrets = settings.sensitive_strings()  # library errors may quote the tracking URI's password
        self._unfinished = settings.cache_dir / "mlflow-unfinished"
        self._server_key = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._records: queue.Queue[_Record] = queue.Queue()
        self._lock = threading.Lock()
        self._sent = self._dropped = self._pending = 0
        self._final_status: str | None = None
        self._gave_up: GiveUp | None = None
        self._answering = True  # whether MLflow's last answer was a success
        self._last_error: str | None = None
        self._enqueue(_Record("the run's creation", lambda: self._start(run_name), needs_run=False))
        self._thread = threading.Thread(target=self._send_all, name=f"mlflow-{run_name}", daemon=True)
        self._thread.start()

    def _call(self, name: str, *args: Any) -> Any:
        """An MLflow operation of `_MlflowCalls`, in the helper process, on this run's tracking URI."""
        return _Tracker.call(self._environment, name, self.uri, *args)

    def _start(self, run_name: str) -> None:
        # with the local SQLite store, artifacts would otherwise land in ./mlruns of whatever folder the process runs in
        self.experiment_id = self._call("experiment_id", EXPERIMENT, self.artifact_location)
        self.run_id = self._call("create_run", self.experiment_id, run_name)
        self._note_unfinished()
        self._end_runs_left_running()

    def _ledger(self, run_id: str) -> Path:
        return self._unfinished / f"{self._server_key}-{run_id}.json"

    def _note_unfinished(self) -> None:
        """Until its final status is sent, this run is listed as unfinished, so that a later run can end it."""
        try:
            self._unfinished.mkdir(parents=True, exist_ok=True)
            self._ledger(self.run_id).write_text(json.dumps({"run_id": self.run_id}))
        except OSError as exc:  # the ledger is a courtesy: without it, a run left RUNNING stays so
            logger.warning("cannot note run %s as unfinished: %s", self.run_id, exc)

    def _end_runs_left_running(self) -> None:
        """Mark FAILED the runs on this server whose final status an earlier process could not send."""
        for ledger in sorted(self._unfinished.glob(f"{self._server_key}-*.json")):
            run_id = ledger.stem.split("-", 1)[1]
            if run_id == self.run_id:
                continue
            try:
                if self._call("status", run_id) == "RUNNING":
                    self._call("set_terminated", run_id, "FAILED")
                ledger.unlink()
            except Exception as exc:  # noqa: BLE001 (tracking must never stop training; tried again next time)
                logger.info("could not end run %s left running: %s", run_id, redact_text(first_line(exc), self._secrets))

    def _enqueue(self, record: _Record) -> None:
        with self._lock:
            self._pending += 1
        self._records.put(record)

    def _send_all(self) -> None:
        while True:
            record = self._records.get()
            if record.needs_run and self.run_id is None:
                self._count(dropped=1)  # the run's creation was given up: no run to log into
            elif record.final:
                self._deliver(record, _backoff(FINAL_STATUS_SECONDS))
            else:
                self._deliver(record, RETRY_DELAYS if self._answering else ())
            if record.final:
                return

    def _count(self, sent: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._pending -= 1
            self._sent += sent
            self._dropped += dropped

    def _deliver(self, record: _Record, delays: tuple[float, ...]) -> None:
        started = time.monotonic()
        for attempt, delay in enumerate((*delays, None), start=1):
            try:
                record.send()
            except Exception as exc:  # tracking must never stop training
                self._answering = False
                error = str(exc) if isinstance(exc, TrackingError) else f"{type(exc).__name__}: {first_line(exc)}"
                self._last_error = redact_text(error, self._secrets)
                if delay is None:
                    with self._lock:
                        if self._gave_up is None:
                            self._gave_up = GiveUp(record.name, attempt, time.monotonic() - started, self._last_error)
                            logger.warning("MLflow logging %s", self._gave_up)
                    self._count(dropped=1)
                    return
                time.sleep(delay)
            else:
                self._answering = True
                self._count(sent=1)
                return

    def delivery(self) -> Delivery:
        with self._lock:
            return Delivery(self._sent, self._dropped, self._pending, self._final_status, self._gave_up)

    @property
    def failure(self) -> str | None:
        """None when everything queued so far reached MLflow (or is on its way to a server that answers)."""
        delivery = self.delivery()
        if delivery.gave_up is not None and self.run_id is None:
            return f"MLflow logging failed: no run was created ({delivery.gave_up})"
        if delivery.dropped:
            total = delivery.sent + delivery.dropped + delivery.pending
            return f"MLflow logging failed: {delivery.dropped} of {total} records were not sent ({delivery.gave_up})"
        if delivery.pending and not self._answering:
            return f"MLflow logging is behind: {delivery.pending} records still being retried ({self._last_error})"
        return None

    def final_report(self) -> str | None:
        """After `finish`/`close`: one line on what never reached MLflow, counting records still queued as dropped
        (the process is about to end), or None when everything arrived."""
        delivery = self.delivery()
        lost = delivery.dropped + delivery.pending
        if self.run_id is None:
            return self.failure
        if not lost and delivery.final_status is not None:
            return None
        ending = ("" if delivery.final_status is not None else
                  f"; run {self.run_id} stays RUNNING in MLflow until the next training run on this server marks it FAILED")
        return f"MLflow logging failed: {lost} of {delivery.sent + lost} records were dropped{ending}"

    @property
    def link(self) -> str | None:
        """A browser link for HTTP tracking servers; a command that opens the local store otherwise."""
        if self.run_id is None:
            return None
        shown = redact_text(redact_uri(self.uri) or self.uri, self._secrets)
        if self.uri.startswith(("http://", "https://")):
            return f"{shown.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {shown}  (then open run {self.run_id})"

    def _redacted(self, value: Any) -> Any:
        """`value` with any password inside its strings replaced by `***`, at any depth of dictionaries and lists."""
        if isinstance(value, str):
            return redact_text(redact_uri(value) or value, self._secrets)
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        return value

    def log_params(self, params: dict[str, Any]) -> None:
        pairs = [(key, self._redacted(str(value))) for key, value in params.items()]
        self._enqueue(_Record("parameters", lambda: self._call("log_params", self.run_id, pairs)))

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        flat: dict[str, Any] = {}
        _flatten("", metrics, flat)
        now = int(time.time() * 1000)  # when measured, not when sent
        rows = [(key, value, now, step or 0) for key, value in flat.items()]
        name = f"metrics of epoch {step}" if step else "final metrics"
        self._enqueue(_Record(name, lambda: self._call("log_metrics", self.run_id, rows)))

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        data = self._redacted(data)
        self._enqueue(_Record(name, lambda: self._call("log_dict", self.run_id, data, name)))

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        self._enqueue(_Record(f"artifacts {artifact_path}/",
                              lambda: self._call("log_artifacts", self.run_id, str(folder), artifact_path)))

    def finish(self, status: str = "FINISHED") -> bool:
        """Queue the final status (FAILED if any record was dropped), then `close`."""

        def send() -> None:
            final = status if self.delivery().dropped == 0 else "FAILED"
            self._call("set_terminated", self.run_id, final)
            with self._lock:
                self._final_status = final
            self._ledger(self.run_id).unlink(missing_ok=True)

        self._enqueue(_Record("the final status", send, final=True))
        return self.close()

    def close(self, timeout: float = FLUSH_SECONDS) -> bool:
        """After `finish`: wait while MLflow answers, then at most `timeout` s more; whether the logger is done."""
        failing_since = None
        while self._thread.is_alive():
            self._thread.join(0.2)
            failing_since = None if self._answering else failing_since or time.monotonic()
            if failing_since is not None and time.monotonic() - failing_since >= timeout:
                return False
        return True
