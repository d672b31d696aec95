"""Settings read from the environment, then `.env` (never overriding the real environment), then Streamlit secrets.

Numbers that cannot be read are a one-line `NaceAppError` naming the variable. A cache folder that cannot be
written (a file, a read-only folder) is replaced by a per-user temporary folder, and `Settings.cache_notice` says so.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nace_app.settings.errors import NaceAppError

DEFAULT_S3_ENDPOINT = "https://minio.lab.sspcloud.fr"
DEFAULT_MODEL_URI = "s3://projet-funathon/diffusion/mlflow-artifacts/"
DEFAULT_DATA_URI = "s3://projet-formation/diffusion/funathon/2026/project2/generation_None_temp08.parquet"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_TRAINING_RUNS = 1
DEFAULT_MAX_DOWNLOAD_MB = 2048
DEFAULT_MIN_DOWNLOAD_KBPS = 20.0  # slower than this after the first bytes, a download is given up
EMBEDDED = "embedded"

_KEYS = (
    "NACE_MODEL_URI",
    "NACE_DATA_URI",
    "NACE_S3_ENDPOINT",
    "NACE_CACHE_DIR",
    "NACE_CONNECT_TIMEOUT",
    "NACE_MAX_TRAINING_RUNS",
    "NACE_MAX_DOWNLOAD_MB",
    "NACE_MIN_DOWNLOAD_KBPS",
    "NACE_WARM_UP",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SECRET_KEYS = {"MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
REDACTED = "***"


def _default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("nace-explorer", appauthor=False))


# --- Redaction ------------------------------------------------------------------------------------------------------

_SECRET_QUERY_KEYS = re.compile(r"(pass(word|wd)?|pwd|secret|token|signature|sig|credential|api[-_]?key)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<password>[^@\s/]*)@")


def redact_uri(uri: str | None) -> str | None:
    """`uri` with the password of its user info and any secret-looking query value replaced by `***`.

    `http://user:pw@host/x?token=abc` becomes `http://user:***@host/x?token=***`; other URIs come back unchanged.
    """
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # not parseable as a URL: fall back to the pattern
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEYS.search(key) for key, _ in pairs):
            query = urlencode([(k, REDACTED if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """A message with every `scheme://user:password@` redacted and each known secret string replaced by `***`.

    For reports that quote library errors, which may repeat a URI or a password in their own words.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def uri_secrets(*uris: str | None) -> list[str]:
    """The passwords inside these URIs (percent-decoded and as written), to redact them from messages."""
    found: list[str] = []
    for uri in uris:
        if not uri or "://" not in uri:
            continue
        try:
            parts = urlsplit(uri)
            password = parts.password
        except ValueError:
            continue
        if password:
            found.append(password)
            raw = parts.netloc.rpartition("@")[0].partition(":")[2]
            if raw and raw != password:
                found.append(raw)
    return found


# --- Settings -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. `model_uri_explicit` / `data_uri_explicit` decide between fallback and error.

    `cache_notice` is one line for the user when the configured cache folder could not be used. `warm_up`
    (NACE_WARM_UP, default 1) prepares in the background what a server's first "Code it" would otherwise wait for.
    """

    model_uri: str = DEFAULT_MODEL_URI
    data_uri: str = DEFAULT_DATA_URI
    s3_endpoint: str = DEFAULT_S3_ENDPOINT
    cache_dir: Path = field(default_factory=_default_cache_dir)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_training_runs: int = DEFAULT_MAX_TRAINING_RUNS
    max_download_mb: int = DEFAULT_MAX_DOWNLOAD_MB
    min_download_kbps: float = DEFAULT_MIN_DOWNLOAD_KBPS
    model_uri_explicit: bool = False
    data_uri_explicit: bool = False
    mlflow_tracking_uri: str | None = None
    aws_credentials: bool = False
    cache_notice: str | None = None
    warm_up: bool = True

    def with_overrides(self, model_uri: str | None = None, data_uri: str | None = None) -> Settings:
        """Settings with URIs given on a command line or in the app; such URIs count as explicit."""
        changes: dict[str, Any] = {}
        if model_uri:
            changes.update(model_uri=model_uri, model_uri_explicit=True)
        if data_uri:
            changes.update(data_uri=data_uri, data_uri_explicit=True)
        return Settings(**{**asdict(self), **changes})

    def sensitive_strings(self) -> list[str]:
        """Strings that must never appear in a message: passwords inside the URIs and the credential variables."""
        from_environment = [os.environ.get(key) for key in _SECRET_KEYS]
        return [s for s in (*uri_secrets(self.model_uri, self.data_uri, self.s3_endpoint, self.mlflow_tracking_uri),
                            *from_environment) if s]

    def to_dict(self) -> dict[str, Any]:
        """Public view (no credentials, passwords inside URIs redacted), for `nace-app info`."""
        data = asdict(self)
        data["cache_dir"] = str(self.cache_dir)
        for key in ("model_uri", "data_uri", "s3_endpoint", "mlflow_tracking_uri"):
            data[key] = redact_uri(data[key])
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


def _positive(values: dict[str, str], key: str, default: float, kind: type, expected: str) -> float:
    """`values[key]` as a finite number above 0 (of `kind`, int or float), or `default` when unset."""
    raw = values.get(key)
    if raw is None:
        return default
    try:
        number = kind(raw.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise NaceAppError(f"{key} must be {expected} (such as {default}), not {raw!r}")
    return number


def _unwritable_because(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (made if missing), or None when they can: tried, not guessed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _temporary_cache_dir() -> Path:
    """A per-user folder under the system temporary folder, reused across restarts; a fresh one if it is not ours."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = Path(tempfile.gettempdir()) / f"nace-explorer-cache-{user}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        ours = stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid())
    except OSError:
        ours = False
    return folder if ours else Path(tempfile.mkdtemp(prefix="nace-explorer-cache-"))


def usable_cache_dir(configured: Path, variable_set: bool) -> tuple[Path, str | None]:
    """The configured cache folder if it can be written, else a temporary one and a one-line notice saying so."""
    reason = _unwritable_because(configured)
    if reason is None:
        return configured, None
    fallback = _temporary_cache_dir()
    fallback_reason = _unwritable_because(fallback)
    origin = "NACE_CACHE_DIR" if variable_set else "the default cache folder"
    if fallback_reason is not None:
        raise NaceAppError(f"no writable cache folder: {origin} {configured} ({reason}) and {fallback} "
                           f"({fallback_reason}); set NACE_CACHE_DIR to a folder you can write")
    return fallback, (f"{origin} {configured} cannot be written ({reason}): downloads and runs go to {fallback} "
                      "for now; set NACE_CACHE_DIR to a writable folder to keep them")


def load_settings(dotenv_path: Path | None = None) -> Settings:
    """Read and check every variable; a value that cannot be used is a one-line `NaceAppError`."""
    values = gather_environment(dotenv_path)
    export_credentials(values)
    connect_timeout = _positive(values, "NACE_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, float,
                                "a number of seconds greater than 0")
    max_training_runs = int(_positive(values, "NACE_MAX_TRAINING_RUNS", DEFAULT_MAX_TRAINING_RUNS, int,
                                      "a whole number of training runs at once, 1 or more"))
    max_download_mb = int(_positive(values, "NACE_MAX_DOWNLOAD_MB", DEFAULT_MAX_DOWNLOAD_MB, int,
                                    "a whole number of megabytes, 1 or more"))
    min_download_kbps = _positive(values, "NACE_MIN_DOWNLOAD_KBPS", DEFAULT_MIN_DOWNLOAD_KBPS, float,
                                  "a number of kilobytes per second greater than 0")
    warm_up = values.get("NACE_WARM_UP", "1").strip().lower()
    if warm_up not in ("0", "1", "true", "false"):
        raise NaceAppError(f"NACE_WARM_UP must be 1 or 0 (true or false), not {warm_up!r}")
    configured = Path(values["NACE_CACHE_DIR"]).expanduser() if "NACE_CACHE_DIR" in values else _default_cache_dir()
    cache_dir, cache_notice = usable_cache_dir(configured, "NACE_CACHE_DIR" in values)
    return Settings(
        model_uri=values.get("NACE_MODEL_URI", DEFAULT_MODEL_URI),
        data_uri=values.get("NACE_DATA_URI", DEFAULT_DATA_URI),
        s3_endpoint=values.get("NACE_S3_ENDPOINT", DEFAULT_S3_ENDPOINT).rstrip("/"),
        cache_dir=cache_dir,
        connect_timeout=connect_timeout,
        max_training_runs=max_training_runs,
        max_download_mb=max_download_mb,
        min_download_kbps=min_download_kbps,
        model_uri_explicit="NACE_MODEL_URI" in values,
        data_uri_explicit="NACE_DATA_URI" in values,
        mlflow_tracking_uri=values.get("MLFLOW_TRACKING_URI"),
        aws_credentials="AWS_ACCESS_KEY_ID" in values and "AWS_SECRET_ACCESS_KEY" in values,
        cache_notice=cache_notice,
        warm_up=warm_up in ("1", "true"),
    )


def tracking_uri(settings: Settings) -> str:
    """The configured MLflow server, else a SQLite file in the cache folder (MLflow 3's own default)."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.cache_dir / 'mlflow.db').resolve()}"
