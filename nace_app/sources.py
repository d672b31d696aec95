"""Where the model and the data come from: public S3, HTTP(S), local paths, MLflow runs, or the embedded demo.

Fallback rule: a *default* source that cannot be reached is replaced by `embedded`, and the reason is recorded.
An *explicit* source (environment variable, `--model`/`--data`, the app's picker) that fails is an error.
Downloads land in the cache directory atomically (temporary folder, then rename), keyed by URI and remote
ETag/size, so a changed remote is fetched again and a half download never poisons the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nace_app.config import EMBEDDED, Settings
from nace_app.errors import NaceAppError, first_line

logger = logging.getLogger(__name__)

LIBRARY_MODEL_FILES = ("metadata.pkl", "tokenizer.pkl", "model_checkpoint.ckpt", "value_encoder.pkl")
OWN_MODEL_FILES = ("config.json", "labels.json", "tokenizer.json", "model.safetensors")
MODEL_MARKERS = ("metadata.pkl", "config.json")


@dataclass(frozen=True)
class ResolvedSource:
    """A source ready to read: `local_path` is a file or directory on this machine."""

    requested: str
    uri: str
    local_path: Path
    explicit: bool
    fallback_reason: str | None = None

    @property
    def is_embedded(self) -> bool:
        return self.uri == EMBEDDED

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "uri": self.uri,
            "local_path": str(self.local_path),
            "explicit": self.explicit,
            "fallback_reason": self.fallback_reason,
        }


def embedded_model_dir() -> Path:
    return Path(str(resources.files("nace_app.resources").joinpath("embedded_model")))


def embedded_data_dir() -> Path:
    return Path(str(resources.files("nace_app.resources").joinpath("demo_data")))


def scheme_of(uri: str) -> str:
    if uri == EMBEDDED:
        return EMBEDDED
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    if uri.startswith("runs:/"):
        return "runs"
    return "file"


def s3_filesystem(settings: Settings):
    """Anonymous for public buckets; the AWS variables are used only when the user set them."""
    import s3fs

    return s3fs.S3FileSystem(
        anon=not settings.aws_credentials,
        endpoint_url=settings.s3_endpoint,
        skip_instance_cache=True,
        config_kwargs={
            "connect_timeout": settings.connect_timeout,
            "read_timeout": max(settings.connect_timeout, 30),
            "retries": {"max_attempts": 1},
        },
    )


def _cache_key(uri: str, version: str) -> str:
    return hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:24]


def _atomic_fill(final: Path, fill: Callable[[Path], None]) -> Path:
    """Run `fill(tmpdir)` and move the result to `final`; an interrupted fill leaves no trace at `final`."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: keep theirs
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, 280)}"


# --- S3 -------------------------------------------------------------------------------------------------------------


def _find_model_dir(fs, prefix: str) -> tuple[str, dict[str, dict]]:
    """The shallowest folder under `prefix` that holds a saved model, with its files' S3 info."""
    found = fs.find(prefix, detail=True)
    if not found:
        raise FileNotFoundError(f"nothing under s3://{prefix}")
    by_dir: dict[str, dict[str, dict]] = {}
    for key, info in found.items():
        folder, _, name = key.rpartition("/")
        by_dir.setdefault(folder, {})[name] = info
    candidates = [d for d, files in by_dir.items() if any(m in files for m in MODEL_MARKERS)]
    if not candidates:
        raise FileNotFoundError(f"no saved model (metadata.pkl or config.json) under s3://{prefix}")
    folder = min(candidates, key=lambda d: (d.count("/"), d))
    return folder, by_dir[folder]


def _version_of(infos: list[dict]) -> str:
    return ";".join(f"{i.get('name') or i.get('Key')}:{i.get('ETag') or i.get('etag')}:{i.get('size')}" for i in infos)


def fetch_s3_model(uri: str, settings: Settings) -> Path:
    fs = s3_filesystem(settings)
    folder, files = _find_model_dir(fs, uri[len("s3://") :].rstrip("/"))
    wanted = {name: info for name, info in files.items() if name in LIBRARY_MODEL_FILES + OWN_MODEL_FILES}
    version = _version_of([wanted[n] for n in sorted(wanted)])
    final = settings.cache_dir / "models" / _cache_key(uri, version)

    def fill(tmp: Path) -> None:
        for name in wanted:
            fs.get(f"{folder}/{name}", str(tmp / name))
        (tmp / "source.json").write_text(json.dumps({"uri": uri, "folder": f"s3://{folder}", "version": version}))

    return _atomic_fill(final, fill)


def fetch_s3_file(uri: str, settings: Settings) -> Path:
    fs = s3_filesystem(settings)
    key = uri[len("s3://") :]
    info = fs.info(key)
    if info.get("type") == "directory":
        raise FileNotFoundError(f"{uri} is a folder, not a file")
    final = settings.cache_dir / "data" / _cache_key(uri, _version_of([info]))

    def fill(tmp: Path) -> None:
        fs.get(key, str(tmp / Path(key).name))

    return next(_atomic_fill(final, fill).iterdir())


# --- HTTP(S) --------------------------------------------------------------------------------------------------------


def fetch_http_file(uri: str, settings: Settings) -> Path:
    head = urllib.request.Request(uri, method="HEAD")
    with urllib.request.urlopen(head, timeout=settings.connect_timeout) as response:
        version = f"{response.headers.get('ETag')}:{response.headers.get('Content-Length')}"
    final = settings.cache_dir / "data" / _cache_key(uri, version)
    name = Path(urllib.request.urlparse(uri).path).name or "data"

    def fill(tmp: Path) -> None:
        with urllib.request.urlopen(uri, timeout=max(settings.connect_timeout, 30)) as response:
            with (tmp / name).open("wb") as out:
                shutil.copyfileobj(response, out)

    return next(_atomic_fill(final, fill).iterdir())


# --- MLflow ---------------------------------------------------------------------------------------------------------


def fetch_mlflow_model(uri: str, settings: Settings) -> Path:
    """`runs:/<run_id>/<artifact_path>`: run artifacts never change, so the URI alone keys the cache."""
    import mlflow

    from nace_app.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(settings))
    final = settings.cache_dir / "models" / _cache_key(uri, "mlflow-run")

    def fill(tmp: Path) -> None:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp / "download")))
        marker = next((p for m in MODEL_MARKERS for p in sorted(local.rglob(m))), None)
        if marker is None:
            raise FileNotFoundError(f"no saved model in {uri}")
        for item in marker.parent.iterdir():
            if item.is_file():
                shutil.move(str(item), tmp / item.name)
        shutil.rmtree(tmp / "download", ignore_errors=True)

    return _atomic_fill(final, fill)


# --- Resolution with fallback ---------------------------------------------------------------------------------------


def _fetch(kind: str, uri: str, settings: Settings) -> Path:
    scheme = scheme_of(uri)
    if scheme == EMBEDDED:
        return embedded_model_dir() if kind == "model" else embedded_data_dir()
    if scheme == "s3":
        return fetch_s3_model(uri, settings) if kind == "model" else fetch_s3_file(uri, settings)
    if scheme in ("http", "https") and kind == "data":
        return fetch_http_file(uri, settings)
    if scheme == "runs" and kind == "model":
        return fetch_mlflow_model(uri, settings)
    if scheme == "file":
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    accepted = "s3://, a local folder, runs:/ or embedded" if kind == "model" else "s3://, https://, a local file or embedded"
    raise NaceAppError(f"unknown {kind} URI scheme in {uri!r}: use {accepted}")


def resolve(kind: str, uri: str, explicit: bool, settings: Settings) -> ResolvedSource:
    """Fetch a source; on failure fall back to embedded for defaults, raise `NaceAppError` for explicit URIs."""
    try:
        return ResolvedSource(uri, uri, _fetch(kind, uri, settings), explicit)
    except NaceAppError:
        raise
    except Exception as exc:  # any failure of a remote: network, permissions, missing key, bad layout
        reason = f"{kind} source {uri} unavailable ({_describe(exc)})"
        if explicit or uri == EMBEDDED:
            raise NaceAppError(reason) from exc
        logger.warning("%s; using the embedded demo %s instead", reason, kind)
        return ResolvedSource(uri, EMBEDDED, _fetch(kind, EMBEDDED, settings), False, fallback_reason=reason)


def resolve_model(settings: Settings) -> ResolvedSource:
    return resolve("model", settings.model_uri, settings.model_uri_explicit, settings)


def resolve_data(settings: Settings) -> ResolvedSource:
    return resolve("data", settings.data_uri, settings.data_uri_explicit, settings)
