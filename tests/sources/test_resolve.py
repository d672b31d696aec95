"""Loading the model and data from S3 (a real local server), HTTP, local folders and the embedded default."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import polars as pl
import pytest

from nace_app.model.opening import open_workspace
from nace_app.review.evaluation import evaluate_classifier
from nace_app.settings.config import load_settings
from nace_app.settings.errors import NaceAppError
from nace_app.sources.resolve import resolve_data, resolve_model
from tests.conftest import MODEL_PREFIX, assert_fell_back_to_embedded, make_public_bucket, upload_folder


def library_top5(model_dir, texts):
    from torchTextClassifiers import torchTextClassifiers

    ttc = torchTextClassifiers.load(model_dir, device="cpu")
    return ttc, ttc.predict(np.asarray(texts), top_k=5)


def test_default_sources_over_s3_give_the_library_top5(sspcloud_layout, s3_server, monkeypatch, tiny_frame,
                                                       attention_model_dir):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    workspace = open_workspace(load_settings())
    assert workspace.fallbacks() == []
    assert workspace.model_source.uri.startswith("s3://projet-funathon/")
    assert workspace.data.source.uri.startswith("s3://projet-formation/")
    texts = tiny_frame["label"].to_list()[:60]
    ttc, reference = library_top5(attention_model_dir, texts)
    ours = workspace.classifier.predict(texts, top_k=5)
    codes = np.array(workspace.classifier.labels)
    assert [[c.code for c in p.candidates] for p in ours] == codes[reference["prediction"].numpy()].tolist()
    ours_probabilities = np.array([[c.probability for c in p.candidates] for p in ours])
    assert np.abs(ours_probabilities - reference["confidence"].numpy()).max() <= 0.005 + 1e-9  # library rounds


def test_test_split_accuracy_matches_the_library_with_and_without_value_encoder(
        sspcloud_layout, s3_server, monkeypatch, bag_model_dir, attention_model_dir):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    for folder, prefix in ((attention_model_dir, MODEL_PREFIX), (bag_model_dir, "models/with-encoder")):
        upload_folder(sspcloud_layout, folder, "projet-funathon", prefix)
        monkeypatch.setenv("NACE_MODEL_URI", f"s3://projet-funathon/{prefix}/")
        workspace = open_workspace(load_settings())
        test = workspace.data.splits.test
        ttc, reference = library_top5(folder, test["label"].to_list())
        predicted = reference["prediction"][:, 0]
        if ttc.value_encoder is None:  # the published script's LabelEncoder over every code of the dataset
            predicted = np.array(sorted(set(workspace.data.frame["code"].to_list())))[predicted.numpy()]
        library_accuracy = float(np.mean(np.asarray(predicted) == np.asarray(test["code"].to_list())))
        ours = evaluate_classifier(workspace.classifier, test)
        assert ours.top1_accuracy == pytest.approx(library_accuracy)
        expected_labels_from = "value_encoder.pkl" if ttc.value_encoder is not None else "sorted distinct codes"
        assert workspace.classifier.loaded.labels_from.startswith(expected_labels_from)


def test_model_without_value_encoder_is_refused_when_class_count_differs(sspcloud_layout, s3_server, monkeypatch,
                                                                        tmp_path, tiny_frame):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    other = tmp_path / "fewer-codes.parquet"
    tiny_frame.filter(pl.col("code") != "10.71").write_parquet(other)
    monkeypatch.setenv("NACE_DATA_URI", str(other))
    with pytest.raises(NaceAppError, match="classes but the dataset has"):
        open_workspace(load_settings())


def test_default_model_falls_back_to_embedded_when_endpoint_unreachable():
    settings = load_settings()
    assert_fell_back_to_embedded(resolve_model(settings), because="unavailable")
    assert settings.s3_endpoint.startswith("http://127.0.0.1")
    data = resolve_data(settings)
    assert data.is_embedded and data.fallback_reason


def test_explicit_model_uri_that_is_unreachable_is_an_error(monkeypatch):
    monkeypatch.setenv("NACE_MODEL_URI", "s3://projet-funathon/diffusion/mlflow-artifacts/")
    with pytest.raises(NaceAppError, match="unavailable"):
        resolve_model(load_settings())


def test_missing_key_is_an_error_when_explicit(sspcloud_layout, s3_server, monkeypatch):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("NACE_DATA_URI", "s3://projet-formation/no/such/file.parquet")
    with pytest.raises(NaceAppError, match="no/such/file.parquet"):
        resolve_data(load_settings())
    monkeypatch.setenv("NACE_MODEL_URI", "s3://projet-funathon/no-model-here/")
    with pytest.raises(NaceAppError):
        resolve_model(load_settings())


class _Forbidden(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.send_response(403)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


def test_forbidden_http_data_is_an_error_when_explicit(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("NACE_DATA_URI", f"http://127.0.0.1:{server.server_port}/data.parquet")
        with pytest.raises(NaceAppError, match="403"):
            resolve_data(load_settings())
    finally:
        server.shutdown()


def test_checkpoint_truncated_at_the_source_is_a_clear_error_and_is_not_cached(sspcloud_layout, s3_server, monkeypatch,
                                                                               attention_model_dir):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    upload_folder(sspcloud_layout, attention_model_dir, "projet-funathon", "broken", skip=("model_checkpoint.ckpt",))
    checkpoint = (attention_model_dir / "model_checkpoint.ckpt").read_bytes()
    sspcloud_layout.put_object(Bucket="projet-funathon", Key="broken/model_checkpoint.ckpt",
                               Body=checkpoint[: len(checkpoint) // 3])
    monkeypatch.setenv("NACE_MODEL_URI", "s3://projet-funathon/broken/")
    settings = load_settings()
    with pytest.raises(NaceAppError, match="model_checkpoint.ckpt: incomplete zip archive") as caught:
        open_workspace(settings)
    assert "\n" not in str(caught.value)
    assert not [p for p in (settings.cache_dir / "models").rglob("*") if p.is_file()]


def test_cache_is_reused_and_replaced_when_the_etag_changes(sspcloud_layout, s3_server, monkeypatch, tiny_frame,
                                                             tmp_path):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    make_public_bucket(sspcloud_layout, "cache-test")
    first_file = tmp_path / "first.parquet"
    tiny_frame.head(50).write_parquet(first_file)
    sspcloud_layout.put_object(Bucket="cache-test", Key="d.parquet", Body=first_file.read_bytes())
    monkeypatch.setenv("NACE_DATA_URI", "s3://cache-test/d.parquet")
    settings = load_settings()
    first = resolve_data(settings).local_path
    again = resolve_data(settings).local_path
    assert again == first
    fetched_at = first.stat().st_mtime_ns
    assert resolve_data(settings).local_path.stat().st_mtime_ns == fetched_at  # reused, not fetched again
    changed = tmp_path / "changed.parquet"
    tiny_frame.head(60).write_parquet(changed)
    sspcloud_layout.put_object(Bucket="cache-test", Key="d.parquet", Body=changed.read_bytes())
    refreshed = resolve_data(settings).local_path
    assert refreshed != first
    assert pl.read_parquet(refreshed).height == 60
    assert not first.exists()  # the replaced copy is removed: the cache does not grow with each change
    copies = [p for p in (settings.cache_dir / "data").rglob("*") if p.is_file() and p.suffix == ".parquet"]
    assert copies == [refreshed]
    assert not list((settings.cache_dir / "data").rglob(".partial*"))


def test_changing_only_the_endpoint_redirects_both_default_sources(sspcloud_layout, s3_server, monkeypatch):
    monkeypatch.setenv("NACE_S3_ENDPOINT", s3_server)
    settings = load_settings()
    assert not settings.model_uri_explicit and not settings.data_uri_explicit
    assert not resolve_model(settings).is_embedded
    assert not resolve_data(settings).is_embedded


def test_embedded_default_loads_without_unpickling(monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the embedded model must not be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setenv("NACE_MODEL_URI", "embedded")
    monkeypatch.setenv("NACE_DATA_URI", "embedded")
    workspace = open_workspace(load_settings())
    assert workspace.classifier.num_classes == 651
    assert workspace.classifier.loaded.model_format == "nace-explorer"


def test_local_data_file_and_local_model_folder(tmp_path, monkeypatch, bag_model_dir, tiny_frame):
    data = tmp_path / "d.csv"
    tiny_frame.select("code", "label").write_csv(data)
    monkeypatch.setenv("NACE_DATA_URI", str(data))
    monkeypatch.setenv("NACE_MODEL_URI", str(bag_model_dir))
    workspace = open_workspace(load_settings())
    assert workspace.data.frame["name"].null_count() == 0
    assert workspace.classifier.loaded.labels_from == "value_encoder.pkl"


def safetensors_file(path, header: dict, data: bytes):
    import json
    import struct

    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_safetensors_file_whose_tensors_do_not_fit_their_shapes_fails_the_load_check(tmp_path):
    from nace_app.sources.resolve import load_check_problem

    whole = safetensors_file(tmp_path / "whole.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                             b"\0" * 8)
    assert load_check_problem(whole) is None
    short = safetensors_file(tmp_path / "short.safetensors", {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}},
                             b"\0" * 8)
    assert load_check_problem(short) == "safetensors tensor 'w' has 8 bytes, its shape needs 16"
    gap = safetensors_file(tmp_path / "gap.safetensors", {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                                                          "b": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}},
                           b"\0" * 10)
    assert load_check_problem(gap) == "safetensors tensors overlap or leave a gap"
