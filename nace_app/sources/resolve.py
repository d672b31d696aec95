"""Where the model and the data come from: public S3, HTTP(S), local paths, MLflow runs, or the embedded demo.

Fallback rule: a *default* source that cannot be reached is replaced by `embedded`, and the reason is recorded.
An *explicit* source (environment variable, `--model`/`--data`, the app's picker) that fails is an error.

Cache: `<cache>/<models|data>/<hash of the URI>/<hash of the remote version>/` holds the files and `source.json`
(the URI, the version, each file's announced size and ETag). A download lands in a temporary folder, is checked
against the size the listing or HEAD announced, against the content MD5 the remote vouches for (an S3 single-part
ETag, a Content-MD5 header; an HTTP ETag is only a version), and against its format read whole (every parquet page,
every safetensors tensor's place and size, JSON, zip directory, pickle end), and only then is renamed into place.
A copy that contradicts the remote's checksum is never cached, however often it comes back the same; nor is one
whose ETag changed since the listing. A download that fails its check is fetched once more; a cached copy that no
longer passes the cheap checks (sizes, footers, headers) is treated as absent, and one its reader cannot read is
dropped (`drop_cached_copy`) and fetched again once. When the remote's version changes, the new copy replaces the
old one of the same URI.

Time bound: a remote source must give a first answer (a listing, a HEAD) within 3 x `NACE_CONNECT_TIMEOUT`
seconds, counted from the moment the request is sent (local start-up work, such as building the S3 client, does
not count), and after that must not stay silent (no bytes received) for as long. Once bytes arrive, each window of
that length must bring at least `NACE_MIN_DOWNLOAD_KBPS` kilobytes a second (default 20): a drip is cut. Past
that, resolution gives up with the reason ("no answer within 15 s", "download stalled", "download too slow"):
defaults fall back, explicit sources fail, and the partial download is removed at once. For a minute after an
endpoint gave no answer, other default sources on it fall back at once (the model and the data do not wait twice).

Size bound: a download larger than `NACE_MAX_DOWNLOAD_MB` is refused before it starts when the remote announces
sizes, and stopped (and deleted) when it does not. MLflow `runs:/` sources are checked from the run's file list:
only a complete model folder of either format is downloaded, and never the pickled format when pickles are not
allowed.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from nace_app.settings.config import EMBEDDED, Settings, redact_text, redact_uri
from nace_app.settings.errors import NaceAppError, first_line

logger = logging.getLogger(__name__)

LIBRARY_MODEL_FILES = ("metadata.pkl", "tokenizer.pkl", "model_checkpoint.ckpt", "value_encoder.pkl",
                       "pytorch_model.pkl", "model_weights.pt")
OWN_MODEL_FILES = ("config.json", "labels.json", "tokenizer.json", "model.safetensors")
OPTIONAL_OWN_FILES = ("calibration.json",)  # fetched when present: a model without one is calibrated at runtime
MODEL_MARKERS = ("metadata.pkl", "config.json")
MANIFEST = "source.json"
CHUNK = 1 << 16
MAX_RUN_ARTIFACTS = 5000  # entries listed while looking for the model folder of an MLflow run
MAX_RUN_DEPTH = 3
STALE_PARTIAL_SECONDS = 6 * 3600  # a `.partial-*` folder this old was left by a process that died
SILENT_MEMORY_SECONDS = 60.0  # a default source on an endpoint that just gave no answer is not asked again


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

    @property
    def shown_uri(self) -> str:
        """The URI as it may be printed or displayed: any password inside it redacted."""
        return redact_uri(self.uri) or self.uri

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": redact_uri(self.requested),
            "uri": self.shown_uri,
            "local_path": str(self.local_path),
            "explicit": self.explicit,
            "fallback_reason": self.fallback_reason,
        }


class SourceProblem(Exception):
    """The remote answered, but what it gave cannot be used (incomplete, damaged, too large, not a model, too slow)."""


class _Abandoned(Exception):
    """Raised inside a fetch that the watchdog has already given up on, to stop it early."""


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


def answer_window(settings: Settings) -> float:
    """Seconds a remote may stay silent: before its first answer, and between two signs of progress."""
    return 3 * settings.connect_timeout


# --- Progress and the watchdog --------------------------------------------------------------------------------------


class _Progress:
    """Signs of life from a remote, shared by the fetching thread and the watchdog waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.begun = False  # until the first request goes out, the work is local and does not count as silence
        self.answered = False
        self.received = 0
        self.last = time.monotonic()
        self.cancelled = threading.Event()
        self._watched: list[Path] = []
        self._watched_bytes = 0  # on disk under the watched folders at the last look
        self._watched_peak = 0

    def begin(self) -> None:
        """Local set-up is done and the first request goes out: the remote's silence counts from now."""
        self.check()
        with self._lock:
            self.begun = True
            self.last = time.monotonic()

    def answer(self) -> None:
        """The remote answered (a listing, a HEAD): from now on only silence counts."""
        self.check()
        with self._lock:
            self.answered = True
            self.last = time.monotonic()

    def got(self, size: int) -> None:
        self.check()
        with self._lock:
            self.received += size
            self.last = time.monotonic()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise _Abandoned("given up by the watchdog")

    def watch(self, folder: Path) -> None:
        """Count bytes appearing under `folder` as progress, for fetchers that report none (MLflow)."""
        with self._lock:
            self._watched.append(folder)

    def silence(self) -> float:
        """Seconds since the last sign of life, counting growth of the watched folders."""
        with self._lock:
            watched = list(self._watched)
        size = 0
        for folder in watched:
            for root, _, names in os.walk(folder):
                for name in names:
                    try:
                        size += os.stat(os.path.join(root, name)).st_size
                    except OSError:  # renamed or removed meanwhile
                        pass
        with self._lock:
            if size != self._watched_bytes:  # a second attempt starts again from zero: any change is activity
                self._watched_bytes = size
                self._watched_peak = max(self._watched_peak, size)
                self.answered = True
                self.last = time.monotonic()
            return time.monotonic() - self.last if self.begun else 0.0

    @property
    def bytes_seen(self) -> int:
        return max(self.received, self._watched_peak)

    def discard_partials(self) -> None:
        """Remove the watched temporary folders of a fetch given up on, not waiting for its thread to notice."""
        with self._lock:
            watched = list(self._watched)
        for folder in watched:
            shutil.rmtree(folder, ignore_errors=True)


class _RateWatch:
    """Bytes received per window once the first ones arrived: a download slower than the minimum rate is cut."""

    def __init__(self, window: float, min_bytes_per_second: float):
        self.window, self.min_rate = window, min_bytes_per_second
        self.started: float | None = None
        self.bytes_at_start = 0

    def too_slow(self, received: int) -> str | None:
        now = time.monotonic()
        if received == 0:
            return None
        if self.started is None:
            self.started, self.bytes_at_start = now, received
            return None
        elapsed = now - self.started
        if elapsed < self.window:
            return None
        rate = (received - self.bytes_at_start) / elapsed
        self.started, self.bytes_at_start = now, received
        if rate < self.min_rate:
            return (f"download too slow: {rate / 1000:,.2f} kB/s over the last {elapsed:.0f} s, under the "
                    f"{self.min_rate / 1000:g} kB/s minimum (NACE_MIN_DOWNLOAD_KBPS)")
        return None


def _within_bound(work: Callable[[_Progress], Path], settings: Settings) -> Path:
    """Run `work` in a thread and give up when the remote stays silent too long (see the module's time bound).

    A fetch given up on is told to stop at its next chunk; until then it only writes to its temporary folder.
    """
    window = answer_window(settings)
    progress = _Progress()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["path"] = work(progress)
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome["error"] = exc
        finally:
            done.set()

    rate = _RateWatch(window, settings.min_download_kbps * 1000)
    threading.Thread(target=run, name="nace-source-fetch", daemon=True).start()
    while not done.wait(min(0.25, window / 4)):
        silence = progress.silence()
        if silence > window and not progress.answered:
            problem = f"no answer within {window:g} s (3 x NACE_CONNECT_TIMEOUT)"
        elif silence > window:
            problem = f"download stalled: nothing received for {window:g} s after {progress.bytes_seen:,} bytes"
        else:
            problem = rate.too_slow(progress.bytes_seen)
        if problem:
            progress.cancelled.set()
            progress.discard_partials()
            raise SourceProblem(problem)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["path"]  # type: ignore[return-value]


# --- Checking downloads ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file as the remote announced it: what its download must match."""

    name: str
    size: int | None
    etag: str | None = None
    md5: str | None = None  # the content MD5 the remote vouches for (an S3 single-part ETag, a Content-MD5)

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "etag": self.etag}


@dataclass(frozen=True)
class Announced:
    """What a download's own response said about its body: length, Content-MD5 (hex) and ETag, when sent."""

    size: int | None = None
    md5: str | None = None
    etag: str | None = None


def _md5_of_etag(etag: str | None) -> str | None:
    """The MD5 an ETag stands for, when it looks like one (S3 single-part uploads); None otherwise."""
    if not etag:
        return None
    value = etag.strip().removeprefix("W/").strip('"').lower()
    return value if re.fullmatch(r"[0-9a-f]{32}", value) else None


def _md5_of_header(value: str | None) -> str | None:
    """A Content-MD5 header (base64 of the digest) as hex; None when absent or malformed."""
    try:
        digest = base64.b64decode(value or "", validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 16 else None


def _md5_of_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def _safetensors_problem(path: Path, size: int) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        (header_size,) = struct.unpack("<Q", head)
        if header_size > size - 8:
            return "safetensors header is longer than the file (truncated)"
        try:
            header = json.loads(handle.read(header_size))
        except ValueError as exc:  # includes UnicodeDecodeError
            return f"safetensors header unreadable ({first_line(exc, 80)})"
    if not isinstance(header, dict):
        return "safetensors header is not a JSON object"
    offsets = [t.get("data_offsets") for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    ends = [o[1] for o in offsets if isinstance(o, list) and len(o) == 2 and isinstance(o[1], int)]
    expected = 8 + header_size + max(ends, default=0)
    if size != expected:
        return f"safetensors file has {size:,} bytes, its header says {expected:,} (truncated)"
    return _safetensors_layout_problem(header)


SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                           "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _safetensors_layout_problem(header: dict) -> str | None:
    """Every tensor's bytes match its dtype and shape, and the tensors tile the data section without gap or overlap."""
    spans = []
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(tensor, dict):
            return f"safetensors entry {name[:40]!r} is not an object"
        width = SAFETENSORS_DTYPE_BYTES.get(tensor.get("dtype"))
        shape, offsets = tensor.get("shape"), tensor.get("data_offsets")
        if (width is None or not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)):
            return f"safetensors entry {name[:40]!r} is malformed"
        count = 1
        for dimension in shape:
            count *= dimension
        if offsets[1] - offsets[0] != count * width:
            return f"safetensors tensor {name[:40]!r} has {offsets[1] - offsets[0]:,} bytes, its shape needs {count * width:,}"
        spans.append(offsets)
    position = 0
    for start, end in sorted(spans):
        if start != position:
            return "safetensors tensors overlap or leave a gap"
        position = end
    return None


def _parquet_problem(path: Path) -> str | None:
    """Every row group read and decompressed: damage inside the pages shows here, not in the footer."""
    import pyarrow
    import pyarrow.parquet

    try:
        with pyarrow.parquet.ParquetFile(path) as parquet:
            for group in range(parquet.num_row_groups):
                parquet.read_row_group(group)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        return f"parquet data unreadable ({first_line(exc, 80)})"
    return None


def load_check_problem(path: Path, whole: bool = False) -> str | None:
    """A cheap load check of a file's format, for damage that sizes alone cannot show; None when it looks whole.

    Only formats recognised by their first bytes are checked, so a file of another kind is left to its reader.
    `whole` also reads a parquet's every page (done once, before a download is cached).
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        handle.seek(max(size - 4, 0))
        tail = handle.read(4)
    suffix = path.suffix.lower()
    if suffix == ".parquet" and head[:4] == b"PAR1":
        if tail != b"PAR1":
            return "parquet file has no footer (truncated)"
        import pyarrow
        import pyarrow.parquet

        try:
            pyarrow.parquet.read_metadata(path)
        except (pyarrow.ArrowException, OSError) as exc:
            return f"parquet metadata unreadable ({first_line(exc, 80)})"
        if whole:
            return _parquet_problem(path)
    elif suffix == ".json":
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:  # includes UnicodeDecodeError
            return f"not valid JSON ({first_line(exc, 80)})"
    elif suffix == ".safetensors":
        return _safetensors_problem(path, size)
    elif head[:4] == b"PK\x03\x04":  # torch checkpoints are zip archives
        try:
            zipfile.ZipFile(path).close()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"incomplete zip archive ({first_line(exc, 80)})"
    elif suffix == ".pkl" and head[:1] == b"\x80" and tail[-1:] != b".":  # every pickle ends with STOP
        return "pickle stream does not end (truncated)"
    return None


def _size_problem(path: Path, expected: RemoteFile, announced: int | None) -> str | None:
    if not path.is_file():
        return f"{expected.name} is missing"
    size = path.stat().st_size
    wanted = expected.size if expected.size is not None else announced
    if wanted is not None and size != wanted:
        return f"{expected.name}: got {size:,} of {wanted:,} bytes"
    return None


def _file_problem(path: Path, expected: RemoteFile, announced: int | None, whole: bool = False) -> str | None:
    problem = _size_problem(path, expected, announced)
    if problem:
        return problem
    problem = load_check_problem(path, whole)
    return f"{expected.name}: {problem}" if problem else None


def _cached_copy_problem(entry: Path) -> str | None:
    """Why a cache entry cannot be used as it is (no manifest, a file missing, resized or damaged), or None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = [RemoteFile(name, info.get("size"), info.get("etag")) for name, info in manifest["files"].items()]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return f"its {MANIFEST} is unreadable ({first_line(exc, 80)})"
    for remote in files:
        problem = _file_problem(entry / remote.name, remote, None)
        if problem:
            return problem
    return None


def _check_size_cap(uri: str, files: list[RemoteFile], settings: Settings) -> None:
    total = sum(f.size or 0 for f in files)
    if total > settings.max_download_mb * 1_000_000:
        raise SourceProblem(f"{redact_uri(uri)} is {total / 1e6:,.1f} MB, over the {settings.max_download_mb:,} MB "
                            "download limit (NACE_MAX_DOWNLOAD_MB)")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _version_of(files: list[RemoteFile]) -> str:
    return ";".join(f"{f.name}:{f.etag}:{f.size}" for f in files)


def _remove_other_copies(uri_dir: Path, keep: str) -> None:
    """Drop replaced versions of one URI and partial downloads left by processes that died."""
    for child in uri_dir.iterdir():
        if child.name == keep:
            continue
        if child.name.startswith(".partial-"):
            try:
                if time.time() - child.stat().st_mtime < STALE_PARTIAL_SECONDS:
                    continue  # maybe another process's download in progress
            except OSError:
                continue
        shutil.rmtree(child, ignore_errors=True)
        logger.info("removed the replaced cache copy %s", child)


Download = Callable[[RemoteFile, Path], "Announced | None"]


def _cached_download(settings: Settings, kind: str, uri: str, files: list[RemoteFile], download: Download,
                     progress: _Progress, extra: dict[str, object] | None = None) -> Path:
    """The cache entry for `files` of `uri`, downloaded and checked if missing or damaged (see the module doc).

    `download(remote, destination)` writes one file and returns what its response announced, if anything.
    """
    uri_dir = settings.cache_dir / ("models" if kind == "model" else "data") / _key(uri)
    final = uri_dir / _key(_version_of(files))
    if final.is_dir():
        problem = _cached_copy_problem(final)
        if problem is None:
            return final
        logger.warning("the cached copy of %s is damaged (%s): fetching it again", redact_uri(uri), problem)
        shutil.rmtree(final, ignore_errors=True)
    uri_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"uri": redact_uri(uri), "version": _version_of(files), **(extra or {}),
                "files": {f.name: f.to_dict() for f in files}}
    problem = ""
    for attempt in (1, 2):
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=uri_dir))
        progress.watch(tmp)
        try:
            problem = _download_all(files, tmp, download, settings)
            if problem is None:
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
                try:
                    os.rename(tmp, final)
                except OSError:  # another process won the race: keep theirs
                    if not final.exists():
                        raise
                _remove_other_copies(uri_dir, keep=final.name)
                return final
            if attempt == 1:
                logger.info("download of %s failed its check (%s): fetching it again", redact_uri(uri), problem)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise SourceProblem(f"{problem}, twice in a row")


def _download_all(files: list[RemoteFile], tmp: Path, download: Download, settings: Settings) -> str | None:
    """Download every file into `tmp` and check it whole; returns the first problem, None if every file is whole.

    A network error during a download counts as a problem (the caller fetches once more). A copy whose MD5
    contradicts the one the remote vouches for is a problem however often it comes back the same.
    """
    total = 0
    for remote in files:
        destination = tmp / remote.name
        try:
            announced = download(remote, destination) or Announced()
        except (OSError, http.client.HTTPException) as exc:
            return f"{remote.name}: download interrupted ({type(exc).__name__}: {first_line(exc, 120)})"
        if remote.etag and announced.etag and announced.etag != remote.etag:
            return f"{remote.name}: the file changed on the server while it was downloaded"
        problem = _size_problem(destination, remote, announced.size)
        if problem:
            return problem
        total += destination.stat().st_size
        if total > settings.max_download_mb * 1_000_000:
            raise SourceProblem(f"the download is over the {settings.max_download_mb:,} MB limit (NACE_MAX_DOWNLOAD_MB)")
        vouched = [(announced.md5, "its Content-MD5"),
                   (remote.md5, "the ETag" if remote.md5 == _md5_of_etag(remote.etag) else "its Content-MD5")]
        digest = _md5_of_file(destination) if any(md5 for md5, _ in vouched) else None
        for md5, vouched_by in vouched:
            if md5 and digest != md5:
                return f"{remote.name}: content MD5 differs from {vouched_by}"
        problem = load_check_problem(destination, whole=True)
        if problem:
            return f"{remote.name}: {problem}"
    return None


# --- S3 -------------------------------------------------------------------------------------------------------------


def s3_filesystem(settings: Settings):
    """Anonymous for public buckets; the AWS variables are used only when the user set them.

    Short timeouts and at most one retry: the watchdog, not s3fs's retry loop, decides when to give up.
    """
    import s3fs

    fs = s3fs.S3FileSystem(
        anon=not settings.aws_credentials,
        endpoint_url=settings.s3_endpoint,
        skip_instance_cache=True,
        config_kwargs={
            "connect_timeout": settings.connect_timeout,
            "read_timeout": 2 * answer_window(settings),  # the watchdog speaks first, with the reason
            "retries": {"max_attempts": 1},
        },
    )
    fs.retries = 2  # s3fs's own loop (5 by default) on top of botocore's
    return fs


def _s3_callback(progress: _Progress):
    from fsspec.callbacks import Callback

    class _S3Progress(Callback):
        """Counts received bytes as progress, and stops a download that the watchdog gave up on."""

        def relative_update(self, inc: int = 1) -> None:
            progress.got(inc)

    return _S3Progress()


def _s3_remote(name: str, info: dict) -> RemoteFile:
    """An S3 object as listed: a single-part upload's ETag is its content MD5, which its download must match."""
    etag = info.get("ETag") or info.get("etag")
    return RemoteFile(name, info.get("size"), etag, _md5_of_etag(etag))


def _s3_get(fs, key: str, destination: Path, progress: _Progress) -> Announced:
    """Download `key`, then ask for its ETag again: an object replaced since it was listed (even with the same size,
    even a multipart upload whose ETag is no MD5) then shows another ETag, and the copy is not kept."""
    fs.get_file(key, str(destination), callback=_s3_callback(progress))
    fs.invalidate_cache(key)
    info = fs.info(key)
    return Announced(etag=info.get("ETag") or info.get("etag"))


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


def model_files_to_fetch(where: str, names: list[str], allow_pickle: bool) -> list[str]:
    """The files of a complete saved model among `names`, ours first; refuses incomplete folders and, unless
    allowed, the library's pickled format, before anything is downloaded."""
    if all(n in names for n in OWN_MODEL_FILES):
        return [*OWN_MODEL_FILES, *(n for n in OPTIONAL_OWN_FILES if n in names)]
    has_weights = "model_checkpoint.ckpt" in names or "pytorch_model.pkl" in names
    if "metadata.pkl" in names and "tokenizer.pkl" in names and has_weights:
        if not allow_pickle:
            raise SourceProblem(f"{where} holds the library's pickled format: only models in NACE Explorer's own "
                                "format (JSON + safetensors) can be opened here")
        return [n for n in LIBRARY_MODEL_FILES if n in names]
    raise SourceProblem(f"{where} holds no complete saved model: NACE Explorer's format needs "
                        f"{', '.join(OWN_MODEL_FILES)}; the library's needs metadata.pkl, tokenizer.pkl and "
                        "model_checkpoint.ckpt")


def _reachable(endpoint: str, timeout: float) -> None:
    """Raise `ConnectionError` unless a TCP connection to the endpoint's host opens within `timeout` seconds.

    Checked before s3fs is imported: an unreachable default S3 (offline, or a name that does not resolve) then
    costs milliseconds, not the 2 CPU-seconds of importing s3fs and botocore, at every cold start.
    """
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {parts.hostname}:{port}: {exc.strerror or first_line(exc)}") from exc


def _connected_s3(settings: Settings, progress: _Progress):
    """The S3 client, built (botocore's models loaded) before the remote's silence starts counting."""
    _reachable(settings.s3_endpoint, settings.connect_timeout)
    fs = s3_filesystem(settings)
    fs.connect()
    progress.begin()
    return fs


def fetch_s3_model(uri: str, settings: Settings, progress: _Progress, allow_pickle: bool = True) -> Path:
    fs = _connected_s3(settings, progress)
    folder, infos = _find_model_dir(fs, uri[len("s3://") :].rstrip("/"))
    progress.answer()
    names = model_files_to_fetch(f"s3://{folder}", sorted(infos), allow_pickle)
    files = [_s3_remote(n, infos[n]) for n in sorted(names)]
    _check_size_cap(uri, files, settings)

    def download(remote: RemoteFile, destination: Path) -> Announced:
        return _s3_get(fs, f"{folder}/{remote.name}", destination, progress)

    return _cached_download(settings, "model", uri, files, download, progress, {"folder": f"s3://{folder}"})


def fetch_s3_file(uri: str, settings: Settings, progress: _Progress) -> Path:
    fs = _connected_s3(settings, progress)
    key = uri[len("s3://") :]
    info = fs.info(key)
    progress.answer()
    if info.get("type") == "directory":
        raise FileNotFoundError(f"{uri} is a folder, not a file")
    remote = _s3_remote(Path(key).name, info)
    _check_size_cap(uri, [remote], settings)

    def download(remote: RemoteFile, destination: Path) -> Announced:
        return _s3_get(fs, key, destination, progress)

    return _cached_download(settings, "data", uri, [remote], download, progress) / remote.name


# --- HTTP(S) --------------------------------------------------------------------------------------------------------


def _request(uri: str, method: str) -> urllib.request.Request:
    """A request with the URI's `user:password@` sent as Basic authentication, never left in the URL."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return urllib.request.Request(uri, method=method)
    host = parts.netloc.rpartition("@")[2]
    request = urllib.request.Request(urlunsplit((parts.scheme, host, parts.path, parts.query, "")), method=method)
    token = base64.b64encode(f"{parts.username or ''}:{parts.password or ''}".encode()).decode()
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _content_length(headers) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value and value.strip().isdigit() else None


def fetch_http_file(uri: str, settings: Settings, progress: _Progress) -> Path:
    progress.begin()
    with urllib.request.urlopen(_request(uri, "HEAD"), timeout=settings.connect_timeout) as response:
        name = Path(urlsplit(uri).path).name or "data"
        remote = RemoteFile(f"data-{name}" if name == MANIFEST else name, _content_length(response.headers),
                            response.headers.get("ETag"), _md5_of_header(response.headers.get("Content-MD5")))
    progress.answer()
    _check_size_cap(uri, [remote], settings)
    cap = settings.max_download_mb * 1_000_000

    def download(remote: RemoteFile, destination: Path) -> Announced:
        with urllib.request.urlopen(_request(uri, "GET"), timeout=2 * answer_window(settings)) as response:
            announced = Announced(_content_length(response.headers), _md5_of_header(response.headers.get("Content-MD5")),
                                  response.headers.get("ETag"))
            written = 0
            with destination.open("wb") as out:
                while chunk := response.read1(CHUNK):  # what has arrived, so progress is seen as it comes
                    progress.got(len(chunk))
                    out.write(chunk)
                    written += len(chunk)
                    if written > cap:
                        raise SourceProblem(f"{redact_uri(uri)} is over the {settings.max_download_mb:,} MB "
                                            "download limit (NACE_MAX_DOWNLOAD_MB)")
        return announced

    return _cached_download(settings, "data", uri, [remote], download, progress) / remote.name


# --- MLflow ---------------------------------------------------------------------------------------------------------


def _split_runs_uri(uri: str) -> tuple[str, str]:
    run_id, _, artifact_path = uri[len("runs:/") :].strip("/").partition("/")
    if not run_id:
        raise NaceAppError(f"{uri!r} names no run: use runs:/<run_id>/<artifact_path>")
    return run_id, artifact_path


def _find_run_model(client, run_id: str, artifact_path: str, progress: _Progress) -> tuple[str, dict[str, int | None]]:
    """The shallowest folder of the run's artifacts (at most 3 levels down) holding a model marker, with sizes."""
    queue: list[tuple[str, int]] = [(artifact_path, 0)]
    listed = 0
    while queue:
        folder, depth = queue.pop(0)
        entries = client.list_artifacts(run_id, folder or None)
        progress.answer()
        listed += len(entries)
        if listed > MAX_RUN_ARTIFACTS:
            raise SourceProblem(f"run {run_id} has more than {MAX_RUN_ARTIFACTS:,} artifacts: name the model folder")
        files = {e.path.rpartition("/")[2]: e.file_size for e in entries if not e.is_dir}
        if any(m in files for m in MODEL_MARKERS):
            return folder, files
        if depth < MAX_RUN_DEPTH:
            queue.extend((e.path, depth + 1) for e in sorted(entries, key=lambda e: e.path) if e.is_dir)
    raise SourceProblem(f"no saved model (config.json or metadata.pkl) in runs:/{run_id}/{artifact_path}")


def _cached_run(settings: Settings, uri: str) -> Path | None:
    """A whole cached copy of a run's model: run artifacts do not change, so it is used without asking MLflow."""
    uri_dir = settings.cache_dir / "models" / _key(uri)
    if not uri_dir.is_dir():
        return None
    for entry in sorted(p for p in uri_dir.iterdir() if not p.name.startswith(".partial-")):
        if _cached_copy_problem(entry) is None:
            return entry
    return None


def fetch_mlflow_model(uri: str, settings: Settings, progress: _Progress, allow_pickle: bool = True) -> Path:
    """`runs:/<run_id>/<artifact_path>`: the run's file list is checked (format, size) before any download."""
    from mlflow.tracking import MlflowClient

    from nace_app.settings.config import tracking_uri

    cached = _cached_run(settings, uri)
    if cached is not None:
        if not allow_pickle:
            model_files_to_fetch(uri, [p.name for p in cached.iterdir()], allow_pickle)
        return cached
    run_id, artifact_path = _split_runs_uri(uri)
    client = MlflowClient(tracking_uri=tracking_uri(settings))
    progress.begin()
    folder, sizes = _find_run_model(client, run_id, artifact_path, progress)
    names = model_files_to_fetch(f"runs:/{run_id}/{folder}", sorted(sizes), allow_pickle)
    files = [RemoteFile(n, sizes[n]) for n in sorted(names)]
    _check_size_cap(uri, files, settings)

    def download(remote: RemoteFile, destination: Path) -> None:
        landing = destination.parent / f".download-{remote.name}"
        local = client.download_artifacts(run_id, f"{folder}/{remote.name}" if folder else remote.name, str(landing))
        progress.check()
        shutil.move(local, destination)
        shutil.rmtree(landing, ignore_errors=True)

    return _cached_download(settings, "model", uri, files, download, progress, {"run_id": run_id, "folder": folder})


# --- Resolution with fallback ---------------------------------------------------------------------------------------

_silent_endpoints: dict[str, tuple[float, str]] = {}
_silent_lock = threading.Lock()


def _endpoint_of(uri: str, settings: Settings) -> str | None:
    """The server a remote URI is fetched from (None for local and embedded sources)."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        return settings.s3_endpoint
    if scheme in ("http", "https"):
        return f"{scheme}://{urlsplit(uri).netloc.rpartition('@')[2]}"
    if scheme == "runs":
        return settings.mlflow_tracking_uri or "local MLflow store"
    return None


def _recently_silent(endpoint: str | None) -> str | None:
    """Why `endpoint` gave no answer less than a minute ago, so that the model and the data do not both wait."""
    with _silent_lock:
        seen = _silent_endpoints.get(endpoint or "")
    if seen and time.monotonic() - seen[0] < SILENT_MEMORY_SECONDS:
        return seen[1]
    return None


def _remember_silence(endpoint: str | None, exc: BaseException) -> None:
    if endpoint and isinstance(exc, SourceProblem) and str(exc).startswith("no answer within"):
        with _silent_lock:
            _silent_endpoints[endpoint] = (time.monotonic(), str(exc))


def _fetch(kind: str, uri: str, settings: Settings, allow_pickle: bool) -> Path:
    scheme = scheme_of(uri)
    if scheme == EMBEDDED:
        return embedded_model_dir() if kind == "model" else embedded_data_dir()
    if scheme == "s3":
        if kind == "model":
            return _within_bound(lambda progress: fetch_s3_model(uri, settings, progress, allow_pickle), settings)
        return _within_bound(lambda progress: fetch_s3_file(uri, settings, progress), settings)
    if scheme in ("http", "https") and kind == "data":
        return _within_bound(lambda progress: fetch_http_file(uri, settings, progress), settings)
    if scheme == "runs" and kind == "model":
        _split_runs_uri(uri)
        return _within_bound(lambda progress: fetch_mlflow_model(uri, settings, progress, allow_pickle), settings)
    if scheme == "file":
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    accepted = "s3://, a local folder, runs:/ or embedded" if kind == "model" else "s3://, https://, a local file or embedded"
    raise NaceAppError(f"unknown {kind} URI scheme in {redact_uri(uri)!r}: use {accepted}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, 280)}"


def resolve(kind: str, uri: str, explicit: bool, settings: Settings, *, allow_pickle: bool = True) -> ResolvedSource:
    """Fetch a source; on failure fall back to embedded for defaults, raise `NaceAppError` for explicit URIs.

    `allow_pickle=False` refuses the library's pickled model format before anything is downloaded.
    """
    if "://" in uri:
        try:
            urlsplit(uri).port  # noqa: B018 (parsing the port is what checks it)
        except ValueError as exc:
            raise NaceAppError(f"malformed {kind} URI {redact_uri(uri)!r}: {first_line(exc, 120)}") from exc
    endpoint = _endpoint_of(uri, settings)
    try:
        silent = None if explicit else _recently_silent(endpoint)
        if silent:
            raise SourceProblem(f"{silent}, less than {SILENT_MEMORY_SECONDS:g} s ago: not asked again")
        return ResolvedSource(uri, uri, _fetch(kind, uri, settings, allow_pickle), explicit)
    except NaceAppError:
        raise
    except Exception as exc:  # any failure of a remote: network, permissions, missing key, bad layout, too slow
        _remember_silence(endpoint, exc)
        reason = redact_text(f"{kind} source {redact_uri(uri)} unavailable ({_describe(exc)})", settings.sensitive_strings())
        if explicit or uri == EMBEDDED:
            raise NaceAppError(reason) from exc
        logger.info("%s; using the embedded demo %s instead", reason, kind)  # the caller says it to the user
        return ResolvedSource(uri, EMBEDDED, _fetch(kind, EMBEDDED, settings, allow_pickle), False,
                              fallback_reason=reason)


def drop_cached_copy(source: ResolvedSource, settings: Settings) -> bool:
    """Remove the download-cache entry `source` was read from, when it came from one: its reader found it damaged.

    Whether an entry was removed (then resolving again fetches a fresh copy).
    """
    for kind in ("models", "data"):
        try:
            parts = source.local_path.resolve().relative_to((settings.cache_dir / kind).resolve()).parts
        except (ValueError, OSError):
            continue
        if len(parts) >= 2 and not parts[1].startswith(".partial-"):
            entry = settings.cache_dir / kind / parts[0] / parts[1]
            logger.warning("the cached copy of %s could not be read: fetching it again", source.shown_uri)
            shutil.rmtree(entry, ignore_errors=True)
            return True
    return False


def resolve_model(settings: Settings) -> ResolvedSource:
    return resolve("model", settings.model_uri, settings.model_uri_explicit, settings)


def resolve_data(settings: Settings) -> ResolvedSource:
    return resolve("data", settings.data_uri, settings.data_uri_explicit, settings)
