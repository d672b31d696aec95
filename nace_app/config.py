"""Settings read from the environment, then `.env` (never overriding the real environment), then Streamlit secrets."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_S3_ENDPOINT = "https://minio.lab.sspcloud.fr"
DEFAULT_MODEL_URI = "s3://projet-funathon/diffusion/mlflow-artifacts/"
DEFAULT_DATA_URI = "s3://projet-formation/diffusion/funathon/2026/project2/generation_None_temp08.parquet"
EMBEDDED = "embedded"

_KEYS = (
    "NACE_MODEL_URI",
    "NACE_DATA_URI",
    "NACE_S3_ENDPOINT",
    "NACE_CACHE_DIR",
    "NACE_CONNECT_TIMEOUT",
    "NACE_MAX_TRAINING_RUNS",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SECRET_KEYS = {"MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def _default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("nace-explorer", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. `model_uri_explicit` / `data_uri_explicit` decide between fallback and error."""

    model_uri: str = DEFAULT_MODEL_URI
    data_uri: str = DEFAULT_DATA_URI
    s3_endpoint: str = DEFAULT_S3_ENDPOINT
    cache_dir: Path = field(default_factory=_default_cache_dir)
    connect_timeout: float = 5.0
    max_training_runs: int = 1
    model_uri_explicit: bool = False
    data_uri_explicit: bool = False
    mlflow_tracking_uri: str | None = None
    aws_credentials: bool = False

    def with_overrides(self, model_uri: str | None = None, data_uri: str | None = None) -> Settings:
        """Settings with URIs given on a command line or in the app; such URIs count as explicit."""
        changes: dict[str, Any] = {}
        if model_uri:
            changes.update(model_uri=model_uri, model_uri_explicit=True)
        if data_uri:
            changes.update(data_uri=data_uri, data_uri_explicit=True)
        return Settings(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Public view (no credentials), for `nace-app info`."""
        data = asdict(self)
        data["cache_dir"] = str(self.cache_dir)
        return data


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _read_streamlit_secrets() -> dict[str, str]:
    """Secrets only exist inside a running Streamlit app; elsewhere this is empty."""
    import sys

    if "streamlit" not in sys.modules:
        return {}
    try:
        import streamlit as st

        return {k: str(st.secrets[k]) for k in _KEYS if k in st.secrets}
    except Exception:  # no secrets file, or not running under streamlit
        return {}


def gather_environment(dotenv_path: Path | None = None) -> dict[str, str]:
    """Environment first, then `.env`, then Streamlit secrets: the first source that has a key wins."""
    merged: dict[str, str] = {}
    sources = (
        {k: v for k, v in os.environ.items() if k in _KEYS},
        _read_dotenv(dotenv_path or Path.cwd() / ".env"),
        _read_streamlit_secrets(),
    )
    for source in sources:
        for key in _KEYS:
            if key in source and key not in merged and source[key] != "":
                merged[key] = source[key]
    return merged


def export_credentials(values: dict[str, str]) -> None:
    """Make `.env`/secrets credentials visible to MLflow and boto, without overriding the real environment."""
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", *_SECRET_KEYS,
                "AWS_ACCESS_KEY_ID"):
        if key in values:
            os.environ.setdefault(key, values[key])


def load_settings(dotenv_path: Path | None = None) -> Settings:
    values = gather_environment(dotenv_path)
    export_credentials(values)
    return Settings(
        model_uri=values.get("NACE_MODEL_URI", DEFAULT_MODEL_URI),
        data_uri=values.get("NACE_DATA_URI", DEFAULT_DATA_URI),
        s3_endpoint=values.get("NACE_S3_ENDPOINT", DEFAULT_S3_ENDPOINT).rstrip("/"),
        cache_dir=Path(values["NACE_CACHE_DIR"]).expanduser() if "NACE_CACHE_DIR" in values else _default_cache_dir(),
        connect_timeout=float(values.get("NACE_CONNECT_TIMEOUT", 5.0)),
        max_training_runs=int(values.get("NACE_MAX_TRAINING_RUNS", 1)),
        model_uri_explicit="NACE_MODEL_URI" in values,
        data_uri_explicit="NACE_DATA_URI" in values,
        mlflow_tracking_uri=values.get("MLFLOW_TRACKING_URI"),
        aws_credentials="AWS_ACCESS_KEY_ID" in values and "AWS_SECRET_ACCESS_KEY" in values,
    )
