"""Faults of remote sources against real local servers: downloads cut short or stalled, an S3 that never answers,
damaged cache copies, oversized, incomplete or pickled MLflow runs, and passwords inside URIs.

Every server here listens on 127.0.0.1 only, serves a bounded number of requests and stops with its test.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from nace_app.settings.config import load_settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import embedded_model_dir, resolve, resolve_data, resolve_model
from tests.conftest import DATA_KEY, assert_fell_back_to_embedded, closed_port_endpoint, make_public_bucket, upload_folder

CHECKSUM_HEADERS = ("x-amz-checksum", "content-md5")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def cached_files(settings, kind: str) -> list[Path]:
    folder = settings.cache_dir / kind
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _LocalServer:
    """Listens on 127.0.0.1 (`port`), serving in a daemon thread from entering to leaving; `released` is set on leaving."""

    port: int

    def __init__(self) -> None:
        self.released = threading.Event()

    def serve(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """What leaving takes besides setting `released`."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.close()


class _HTTPServer(_LocalServer):
    """A threaded HTTP server (`self.server`) whose held requests wait for `released`."""

    def __init__(self, handler: type[_QuietHandler]):
        super().__init__()
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port

    def serve(self) -> None:
        self.server.serve_forever()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FileServer(_HTTPServer):
    """One file over HTTP whose successive GETs follow a script, then `then`:

    `ok`; `cut` (the full Content-Length announced, half the body sent, connection closed); `stall` (half the body,
    then silence until the test ends, 30 s at most); `trickle` (the whole body in 20 slow, steady pieces); `corrupt`
    (the middle byte flipped, same length); `drip` (one byte a second until the test ends, 60 s at most);
    `replaced` (another version of the same size, with its own ETag, replaced the file after the HEAD).
    With `content_md5`, every answer carries the payload's Content-MD5.
    """

    def __init__(self, payload: bytes, script: tuple[str, ...] = (), then: str = "ok", etag: str = '"v1"',
                 credentials: tuple[str, str] | None = None, trickle_seconds: float = 3.0, content_md5: bool = False):
        self.payload, self.script, self.then, self.etag = payload, list(script), then, etag
        self.credentials, self.trickle_seconds, self.content_md5 = credentials, trickle_seconds, content_md5
        self.gets = 0
        owner = self

        class Handler(_QuietHandler):
            def _authorised(self) -> bool:
                if owner.credentials is None:
                    return True
                token = base64.b64encode(":".join(owner.credentials).encode()).decode()
                if self.headers.get("Authorization") == f"Basic {token}":
                    return True
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def _head(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.payload)))
                self.send_header("ETag", owner.etag)
                if owner.content_md5:
                    self.send_header("Content-MD5", base64.b64encode(hashlib.md5(owner.payload).digest()).decode())
                self.end_headers()

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                if self._authorised():
                    self._head()

            def do_GET(self):  # noqa: N802
                if not self._authorised():
                    return
                behaviour = owner.next_behaviour()
                if behaviour == "replaced":  # another version of the same size, put there since the HEAD
                    owner.etag = '"v2"'
                self._head()
                body, half = owner.payload, len(owner.payload) // 2
                if behaviour == "ok":
                    self.wfile.write(body)
                elif behaviour == "cut":
                    self.wfile.write(body[:half])
                elif behaviour == "stall":
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    owner.released.wait(30)
                elif behaviour == "corrupt":
                    self.wfile.write(body[:half] + bytes([body[half] ^ 0xFF]) + body[half + 1:])
                elif behaviour == "drip":
                    for byte in range(min(len(body), 60)):
                        if owner.released.wait(1):
                            break
                        self.wfile.write(body[byte:byte + 1])
                        self.wfile.flush()
                elif behaviour == "trickle":
                    step = max(len(body) // 20, 1)
                    for start in range(0, len(body), step):
                        self.wfile.write(body[start:start + step])
                        self.wfile.flush()
                        time.sleep(owner.trickle_seconds / 20)
                self.close_connection = True

        super().__init__(Handler)
        self.url = f"{self.endpoint}/data.parquet"

    def next_behaviour(self) -> str:
        with self._lock:
            self.gets += 1
            return self.script.pop(0) if self.script else self.then


class S3Proxy(_HTTPServer):
    """A proxy in front of the local S3 that damages GETs of chosen keys, as a broken network path would:

    `truncate` (half the body with a matching short Content-Length and no checksum headers), `corrupt` (one byte
    flipped, same length), `stall` (the full length announced, half sent, then silence, 30 s at most).
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.faults: dict[str, list[str]] = {}
        self.always: dict[str, str] = {}
        self.gets: Counter[str] = Counter()
        owner = self

        class Handler(_QuietHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request_body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                upstream = http.client.HTTPConnection(owner.upstream, timeout=30)
                upstream.request(self.command, self.path, body=request_body, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                upstream.close()
                key = self.path.split("?", 1)[0]
                damageable = self.command == "GET" and response.status in (200, 206)  # 206: s3fs resuming with a Range
                behaviour = owner.behaviour_for(key) if damageable else "ok"
                announced = int(response.getheader("Content-Length") or 0) if self.command == "HEAD" else len(body)
                if behaviour == "truncate":
                    body = body[: len(body) // 2]
                    announced = len(body)
                elif behaviour == "corrupt":
                    middle = len(body) // 2
                    body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
                self.send_response(response.status)
                for name, value in response.getheaders():
                    lowered = name.lower()
                    if lowered in HOP_BY_HOP or (behaviour != "ok" and lowered.startswith(CHECKSUM_HEADERS)):
                        continue
                    self.send_header(name, value)
                self.send_header("Content-Length", str(announced))
                if behaviour == "stall":
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if behaviour == "stall":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    owner.released.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 (http.server's naming)

        super().__init__(Handler)

    def damage(self, key: str, *behaviours: str, always: str | None = None) -> None:
        """Damage the next GETs of `key` (a bucket/key path) with `behaviours`, or every one with `always`."""
        with self._lock:
            self.faults[f"/{key}"] = list(behaviours)
            if always:
                self.always[f"/{key}"] = always

    def behaviour_for(self, path: str) -> str:
        with self._lock:
            self.gets[path] += 1
            queued = self.faults.get(path)
            if queued:
                return queued.pop(0)
            return self.always.get(path, "ok")


class SilentServer(_LocalServer):
    """Accepts TCP connections and never answers (an overloaded S3 behind a load balancer); stops by itself."""

    def __init__(self, lifetime: float = 90.0):
        super().__init__()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.deadline = time.monotonic() + lifetime
        self.accepted = 0

    def serve(self) -> None:
        held = []
        try:
            while not self.released.is_set() and time.monotonic() < self.deadline:
                try:
                    connection, _ = self.socket.accept()
                except TimeoutError:
                    continue
                self.accepted += 1
                held.append(connection)
        finally:
            for connection in held:
                connection.close()
            self.socket.close()


def within(seconds: float, action):
    """Run `action` in a thread and fail (instead of hanging the suite) if it takes longer than `seconds`."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still resolving after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


@pytest.fixture()
def parquet_bytes(tiny_frame, tmp_path) -> bytes:
    """A parquet whose middle byte, flipped (the servers' `corrupt`), breaks its structure. Not every flip does: one
    inside a page's values can read back cleanly as other text, which only a checksum the remote vouches for can
    catch; the structure check is for the rest."""
    import io

    path = tmp_path / "served.parquet"
    tiny_frame.head(400).write_parquet(path)
    served = path.read_bytes()
    damaged = bytearray(served)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(pl.exceptions.ComputeError):
        pl.read_parquet(io.BytesIO(bytes(damaged)))
    return served


# --- Fault 1: interrupted downloads never poison the cache ------------------------------------------------------


def test_http_data_cut_at_half_once_is_fetched_again_and_cached_whole(parquet_bytes, monkeypatch):
    with FileServer(parquet_bytes, script=("cut",)) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        source = resolve_data(settings)
        assert source.local_path.read_bytes() == parquet_bytes
        assert server.gets == 2
        assert resolve_data(settings).local_path == source.local_path and server.gets == 2  # reused, whole
    assert pl.read_parquet(source.local_path).height > 0


def test_http_data_cut_short_every_time_is_a_one_line_error_and_leaves_nothing_cached(parquet_bytes, monkeypatch):
    with FileServer(parquet_bytes, then="cut") as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        with pytest.raises(NaceAppError, match=r"got [\d,]+ of [\d,]+ bytes, twice in a row") as caught:
            resolve_data(settings)
        assert server.gets == 2
    assert "\n" not in str(caught.value)
    assert cached_files(settings, "data") == []


def test_damaged_cached_copy_is_treated_as_absent_and_fetched_again(parquet_bytes, monkeypatch):
    with FileServer(parquet_bytes) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        cached = resolve_data(settings).local_path
        cached.write_bytes(parquet_bytes[: len(parquet_bytes) // 2])  # as an older version could leave it
        again = resolve_data(settings).local_path
        assert again.read_bytes() == parquet_bytes
        assert server.gets == 2


def test_an_http_etag_is_a_version_not_a_checksum_so_one_whole_download_suffices(parquet_bytes, monkeypatch):
    not_the_md5 = '"' + hashlib.md5(b"something else").hexdigest() + '"'
    with FileServer(parquet_bytes, etag=not_the_md5) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        assert resolve_data(load_settings()).local_path.read_bytes() == parquet_bytes
        assert server.gets == 1


def test_http_data_damaged_the_same_way_on_both_tries_against_its_content_md5_is_never_cached(parquet_bytes,
                                                                                              monkeypatch):
    with FileServer(parquet_bytes, then="corrupt", content_md5=True) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        with pytest.raises(NaceAppError, match="content MD5 differs from its Content-MD5, twice in a row"):
            resolve_data(settings)
        assert server.gets == 2
    assert cached_files(settings, "data") == []


def test_http_parquet_damaged_on_both_tries_without_any_checksum_is_caught_by_reading_it_whole(parquet_bytes,
                                                                                               monkeypatch):
    with FileServer(parquet_bytes, then="corrupt") as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        with pytest.raises(NaceAppError, match="data.parquet: parquet data unreadable .*, twice in a row"):
            resolve_data(settings)
    assert cached_files(settings, "data") == []


def test_a_file_replaced_between_its_head_and_its_get_is_never_cached_under_the_old_version(parquet_bytes,
                                                                                            monkeypatch):
    with FileServer(parquet_bytes, then="replaced") as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        with pytest.raises(NaceAppError, match="changed on the server while it was downloaded"):
            resolve_data(settings)
    assert cached_files(settings, "data") == []


def test_a_cached_parquet_that_no_longer_reads_is_dropped_and_fetched_again_before_any_error(parquet_bytes,
                                                                                             monkeypatch):
    from nace_app.model.opening import open_data

    with FileServer(parquet_bytes) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        cached = resolve_data(settings).local_path
        damaged = bytearray(parquet_bytes)
        damaged[len(damaged) // 2] ^= 0xFF  # same size, footer intact: only reading it whole shows the damage
        cached.write_bytes(bytes(damaged))
        data = open_data(settings)
        assert server.gets == 2 and data.frame.height > 0
        assert data.source.local_path.read_bytes() == parquet_bytes


@pytest.fixture()
def s3_proxy(sspcloud_layout, s3_server, monkeypatch):
    """An `S3Proxy` in front of the SSP Cloud layout, set as the S3 endpoint for the test."""
    with S3Proxy(s3_server) as proxy:
        monkeypatch.setenv("NACE_S3_ENDPOINT", proxy.endpoint)
        yield proxy


@pytest.mark.parametrize("damage", ["truncate", "corrupt"], ids=["truncated", "corrupted with the right size, caught by its etag"])
def test_s3_data_damaged_once_on_the_wire_is_fetched_again(s3_proxy, tiny_parquet, damage):
    s3_proxy.damage(f"projet-formation/{DATA_KEY}", damage)
    source = resolve_data(load_settings())  # the default data source
    assert not source.is_embedded and source.fallback_reason is None
    assert source.local_path.read_bytes() == tiny_parquet.read_bytes()
    assert s3_proxy.gets[f"/projet-formation/{DATA_KEY}"] == 2


def test_default_data_truncated_on_every_get_falls_back_to_embedded_with_the_reason(s3_proxy):
    s3_proxy.damage(f"projet-formation/{DATA_KEY}", always="truncate")
    settings = load_settings()
    assert_fell_back_to_embedded(resolve_data(settings), because="bytes, twice in a row")
    assert cached_files(settings, "data") == []


def test_default_s3_data_damaged_the_same_way_on_every_get_is_never_cached_and_falls_back(s3_proxy):
    s3_proxy.damage(f"projet-formation/{DATA_KEY}", always="corrupt")
    settings = load_settings()
    assert_fell_back_to_embedded(resolve_data(settings), because="content MD5 differs from the ETag, twice in a row")
    assert cached_files(settings, "data") == []
    assert resolve_data(settings).is_embedded  # and the next run does not find a poisoned copy either


def test_explicit_s3_weights_damaged_the_same_way_on_every_get_are_refused_not_used(s3_proxy, sspcloud_layout):
    upload_folder(sspcloud_layout, embedded_model_dir(), "projet-funathon", "own-model")
    s3_proxy.damage("projet-funathon/own-model/model.safetensors", always="corrupt")
    settings = load_settings()
    with pytest.raises(NaceAppError, match="model.safetensors: content MD5 differs from the ETag, twice in a row"):
        resolve("model", "s3://projet-funathon/own-model/", True, settings)
    assert cached_files(settings, "models") == []


def test_s3_model_checkpoint_truncated_once_on_the_wire_is_fetched_again(s3_proxy, attention_model_dir):
    s3_proxy.damage("projet-funathon/diffusion/mlflow-artifacts/model_checkpoint.ckpt", "truncate")
    source = resolve_model(load_settings())
    assert not source.is_embedded
    for name in ("metadata.pkl", "tokenizer.pkl", "model_checkpoint.ckpt"):
        assert (source.local_path / name).read_bytes() == (attention_model_dir / name).read_bytes()


# --- Fault 2: a slow but connectable remote cannot delay the fallback ---------------------------------------------


@pytest.fixture()
def silent_s3(monkeypatch):
    """A `SilentServer` as the S3 endpoint, with a 1 s connect timeout (3 s without an answer)."""
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "1")
    with SilentServer() as silent:
        monkeypatch.setenv("NACE_S3_ENDPOINT", silent.endpoint)
        yield silent


def test_default_sources_fall_back_within_the_bound_when_s3_accepts_connections_but_never_answers(silent_s3):
    settings = load_settings()
    model, data = within(60, lambda: (resolve_model(settings), resolve_data(settings)))
    assert silent_s3.accepted >= 1
    assert_fell_back_to_embedded(model, because="no answer within 3 s")
    assert_fell_back_to_embedded(data, because="no answer within 3 s")
    assert "not asked again" in data.fallback_reason  # the data does not wait for the same silent endpoint


def test_explicit_source_on_an_s3_that_never_answers_is_a_one_line_error(silent_s3, monkeypatch):
    monkeypatch.setenv("NACE_DATA_URI", f"s3://projet-formation/{DATA_KEY}")
    with pytest.raises(NaceAppError, match="no answer within 3 s") as caught:
        within(60, lambda: resolve_data(load_settings()))
    assert "\n" not in str(caught.value)


def test_s3_download_that_stalls_midway_falls_back_and_says_it_stalled(s3_proxy, monkeypatch):
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "1.5")
    s3_proxy.damage(f"projet-formation/{DATA_KEY}", always="stall")
    settings = load_settings()
    source = within(60, lambda: resolve_data(settings))
    assert_fell_back_to_embedded(source, because="download stalled: nothing received for 4.5 s")


def test_http_download_that_stalls_midway_is_an_error_saying_it_stalled(parquet_bytes, monkeypatch):
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "0.5")
    with FileServer(parquet_bytes, then="stall") as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        with pytest.raises(NaceAppError, match="download stalled"):
            within(60, lambda: resolve_data(load_settings()))


def test_slow_download_that_keeps_progressing_above_the_minimum_rate_is_not_cut(parquet_bytes, monkeypatch):
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "1")  # silent 3 s at most; the whole download takes 4.5 s
    monkeypatch.setenv("NACE_MIN_DOWNLOAD_KBPS", str(len(parquet_bytes) / 4.5 / 1000 / 4))  # a quarter of its rate
    with FileServer(parquet_bytes, then="trickle", trickle_seconds=4.5) as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        source = within(60, lambda: resolve_data(load_settings()))
    assert source.local_path.read_bytes() == parquet_bytes


def test_a_one_byte_a_second_drip_is_cut_by_the_minimum_rate_and_leaves_no_partial_download(parquet_bytes,
                                                                                            monkeypatch):
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "1")  # the rate is measured over 3 s windows
    with FileServer(parquet_bytes, then="drip") as server:
        monkeypatch.setenv("NACE_DATA_URI", server.url)
        settings = load_settings()
        with pytest.raises(NaceAppError, match=r"download too slow: 0.00 kB/s .* under the 20 kB/s minimum "
                                               r"\(NACE_MIN_DOWNLOAD_KBPS\)") as caught:
            within(60, lambda: resolve_data(settings))
        assert not list(settings.cache_dir.rglob(".partial-*"))
    assert "\n" not in str(caught.value)


def test_slow_local_start_up_does_not_count_as_the_remote_s_silence(s3_client, s3_server, tiny_parquet, monkeypatch):
    import s3fs

    make_public_bucket(s3_client, "start-up")
    s3_client.put_object(Bucket="start-up", Key="data.parquet", Body=tiny_parquet.read_bytes())
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "0.5")  # 1.5 s without an answer from S3 would be too long
    build_client = s3fs.S3FileSystem.connect

    def loaded_machine_connect(self, *args, **kwargs):  # botocore loading its models on a busy machine
        time.sleep(3)
        return build_client(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "connect", loaded_machine_connect)
    source = within(60, lambda: resolve("data", "s3://start-up/data.parquet", False, load_settings()))
    assert source.fallback_reason is None and source.local_path.read_bytes() == tiny_parquet.read_bytes()


def _parquet_of(frame: pl.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="uncompressed", statistics=False)
    return buffer.getvalue()


def _multipart_put(client, bucket: str, key: str, body: bytes) -> None:
    """A multipart upload (of one part: the file is small): its ETag ("<hash>-1") is not an MD5 of the content."""
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=body)["ETag"]
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                     MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    assert client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"').endswith("-1")


@pytest.mark.parametrize("upload", ["single part", "multipart"])
def test_an_s3_object_replaced_between_its_listing_and_its_get_is_never_cached_under_the_old_version(
        upload, s3_client, s3_server, tiny_frame, monkeypatch):
    """The same size, another content: only the ETag tells (for a multipart upload it is no MD5 to check against)."""
    import s3fs

    old = _parquet_of(tiny_frame.with_columns(pl.col("label").str.to_uppercase()))
    new = _parquet_of(tiny_frame.with_columns(pl.col("label").str.to_lowercase()))
    assert len(old) == len(new) and old != new
    bucket, key = "replaced", f"{upload.replace(' ', '-')}/data.parquet"
    make_public_bucket(s3_client, bucket)
    put = _multipart_put if upload == "multipart" else (lambda c, b, k, body: c.put_object(Bucket=b, Key=k, Body=body))
    put(s3_client, bucket, key, old)
    get_file = s3fs.S3FileSystem.get_file

    def replaced_before_the_get(self, *args, **kwargs):
        put(s3_client, bucket, key, new)
        return get_file(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "get_file", replaced_before_the_get)
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    settings = load_settings()
    with pytest.raises(NaceAppError, match="changed on the server while it was downloaded"):
        resolve("data", f"s3://{bucket}/{key}", True, settings)
    assert cached_files(settings, "data") == []
    monkeypatch.setattr(s3fs.S3FileSystem, "get_file", get_file)  # the next run lists the new version and keeps it
    source = resolve("data", f"s3://{bucket}/{key}", True, settings)
    assert source.local_path.read_bytes() == new


# --- Fault 5: MLflow runs are checked before anything is downloaded -----------------------------------------------


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory, migrated_mlflow_store) -> tuple[str, str]:
    """A real MLflow store (SQLite) shared by this module's tests: its URI and an experiment id."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    shutil.copy(migrated_mlflow_store, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = MlflowClient(tracking_uri=uri).create_experiment("faults", artifact_location=str(folder / "artifacts"))
    return uri, experiment


def logged_run(store: tuple[str, str], files: dict[str, bytes], monkeypatch) -> str:
    """A run whose `model/` artifacts are `files`; MLFLOW_TRACKING_URI points at the store. Returns a runs:/ URI."""
    from mlflow.tracking import MlflowClient

    uri, experiment = store
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment)
    staging = Path(tempfile.mkdtemp(prefix="run-"))
    for name, content in files.items():
        (staging / name).write_bytes(content)
    client.log_artifacts(run.info.run_id, str(staging), "model")
    shutil.rmtree(staging)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return f"runs:/{run.info.run_id}/model"


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def assert_refused_and_nothing_cached(uri: str, refusal: str, allow_pickle: bool = True):
    """Resolving the run's model (an explicit URI) raises `refusal` and leaves the model cache empty; returns the settings."""
    settings = load_settings()
    with pytest.raises(NaceAppError, match=refusal):
        resolve("model", uri, True, settings, allow_pickle=allow_pickle)
    assert cached_files(settings, "models") == []
    return settings


def test_mlflow_run_over_the_download_limit_is_refused_before_downloading(mlflow_store, monkeypatch):
    uri = logged_run(mlflow_store, folder_bytes(embedded_model_dir()), monkeypatch)  # about 3.4 MB
    monkeypatch.setenv("NACE_MAX_DOWNLOAD_MB", "1")
    assert_refused_and_nothing_cached(uri, r"over the 1 MB download limit \(NACE_MAX_DOWNLOAD_MB\)")


def test_pickled_mlflow_run_is_refused_before_downloading_when_pickles_are_not_allowed(mlflow_store, monkeypatch,
                                                                                       bag_model_dir):
    uri = logged_run(mlflow_store, folder_bytes(bag_model_dir), monkeypatch)
    settings = assert_refused_and_nothing_cached(uri, "pickled format", allow_pickle=False)
    allowed = resolve("model", uri, True, settings)  # the command line may read pickles from configured sources
    assert (allowed.local_path / "metadata.pkl").read_bytes() == (bag_model_dir / "metadata.pkl").read_bytes()
    with pytest.raises(NaceAppError, match="pickled format"):  # nor from the cache, once it holds them
        resolve("model", uri, True, settings, allow_pickle=False)


def test_mlflow_run_with_an_incomplete_model_folder_is_refused_and_nothing_is_downloaded(mlflow_store, monkeypatch):
    uri = logged_run(mlflow_store, {"config.json": b"{}", "notes.txt": b"x" * 100_000}, monkeypatch)
    assert_refused_and_nothing_cached(uri, "holds no complete saved model")


def test_mlflow_run_with_damaged_weights_is_refused_and_its_download_deleted(mlflow_store, monkeypatch):
    files = folder_bytes(embedded_model_dir())
    files["model.safetensors"] = files["model.safetensors"][:100_000]
    uri = logged_run(mlflow_store, files, monkeypatch)
    assert_refused_and_nothing_cached(uri, r"model.safetensors: safetensors file has 100,000 bytes, its header says")


def test_mlflow_run_downloads_only_the_model_files(mlflow_store, monkeypatch):
    files = folder_bytes(embedded_model_dir())
    uri = logged_run(mlflow_store, {**files, "debug-dump.bin": b"\0" * 2_000_000}, monkeypatch)
    source = resolve("model", uri, True, load_settings(), allow_pickle=False)
    assert not (source.local_path / "debug-dump.bin").exists()
    for name in ("config.json", "labels.json", "tokenizer.json", "model.safetensors"):
        assert (source.local_path / name).read_bytes() == files[name]


# --- Passwords inside URIs never reach a message ------------------------------------------------------------------


def test_password_in_mlflow_tracking_uri_never_appears_in_the_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_endpoint().replace("http://", "http://reader:s3cret-pw@"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own message, at once
    monkeypatch.setenv("NACE_MODEL_URI", "runs:/0123456789abcdef/model")
    settings = load_settings()
    with pytest.raises(NaceAppError) as caught:
        within(60, lambda: resolve_model(settings))
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in str(settings.to_dict())


def test_http_data_with_credentials_in_the_uri_authenticates_and_is_reported_without_the_password(parquet_bytes,
                                                                                                  monkeypatch):
    with FileServer(parquet_bytes, credentials=("reader", "s3cret-pw")) as server:
        good = server.url.replace("http://", "http://reader:s3cret-pw@")
        monkeypatch.setenv("NACE_DATA_URI", good)
        settings = load_settings()
        source = resolve_data(settings)
        assert source.local_path.read_bytes() == parquet_bytes
        assert "s3cret-pw" not in str(source.to_dict()) and "s3cret-pw" not in str(settings.to_dict())
        assert source.shown_uri == server.url.replace("http://", "http://reader:***@")
        monkeypatch.setenv("NACE_DATA_URI", server.url.replace("http://", "http://reader:wrong-s3cret@"))
        with pytest.raises(NaceAppError, match="401") as caught:
            resolve_data(load_settings())
    assert "wrong-s3cret" not in str(caught.value)
    assert not [p for p in cached_files(settings, "data") if b"s3cret" in p.read_bytes()]
