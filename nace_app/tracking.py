"""MLflow logging, explicit (never autolog, which would patch every session's trainer) and never fatal.

The store is `MLFLOW_TRACKING_URI` when set, else a SQLite database under the cache directory. Every call goes
through `MlflowClient` with an explicit run id, so concurrent runs in one process cannot mix their logs. When the
tracking server fails, training goes on and `failure` says what happened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nace_app.config import Settings
from nace_app.errors import first_line

logger = logging.getLogger(__name__)

EXPERIMENT = "nace-explorer"


def tracking_uri(settings: Settings) -> str:
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.cache_dir / 'mlflow.db').resolve()}"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


class RunLogger:
    """One MLflow run; after the first failure, further calls are skipped and `failure` keeps the reason."""

    def __init__(self, settings: Settings, run_name: str):
        self.uri = tracking_uri(settings)
        self.artifact_location = None if settings.mlflow_tracking_uri else (settings.cache_dir / "mlartifacts").resolve().as_uri()
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.failure: str | None = None
        self._guard(self._start, run_name)

    def _guard(self, action, *args) -> None:
        if self.failure is not None:
            return
        try:
            action(*args)
        except Exception as exc:  # tracking must never stop training
            self.failure = f"MLflow logging failed: {type(exc).__name__}: {first_line(exc)}"
            logger.warning(self.failure)

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _start(self, run_name: str) -> None:
        client = self.client
        experiment = client.get_experiment_by_name(EXPERIMENT)
        # with the local SQLite store, artifacts would otherwise land in ./mlruns of whatever folder the process runs in
        self.experiment_id = (experiment.experiment_id if experiment else
                              client.create_experiment(EXPERIMENT, artifact_location=self.artifact_location))
        self.run_id = client.create_run(self.experiment_id, run_name=run_name).info.run_id

    @property
    def link(self) -> str | None:
        """A browser link for HTTP tracking servers; a command that opens the local store otherwise."""
        if self.run_id is None:
            return None
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {self.uri}  (then open run {self.run_id})"

    def log_params(self, params: dict[str, Any]) -> None:
        def action() -> None:
            client = self.client
            for key, value in params.items():
                client.log_param(self.run_id, key, "None" if value is None else value)

        self._guard(action)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        flat: dict[str, Any] = {}
        _flatten("", metrics, flat)

        def action() -> None:
            client = self.client
            for key, value in flat.items():
                client.log_metric(self.run_id, key, value, step=step or 0)

        self._guard(action)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self._guard(lambda: self.client.log_dict(self.run_id, data, name))

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        self._guard(lambda: self.client.log_artifacts(self.run_id, str(folder), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self._guard(lambda: self.client.set_terminated(self.run_id, status))
