"""Shared fixtures: tiny real models trained by torchTextClassifiers itself, real data, a real local S3."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nace_app.app.serving import free_port
from nace_app.settings.logs import configure_logging

REPO = Path(__file__).resolve().parents[1]
SHARED_STRUCTURE = REPO.parent / "shared" / "nace" / "nace_rev2.1_structure.csv"
CLASSES_IN_TINY_DATA = ("10.71", "10.72", "47.24", "46.36", "62.10", "62.20", "45.20", "71.20", "55.10", "56.11",
                        "01.11", "41.00", "43.21", "86.21", "49.41")

configure_logging()


def closed_port_endpoint() -> str:
    """An endpoint nobody listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def assert_fell_back_to_embedded(source, because: str) -> None:
    """The resolved source is the embedded copy, and its fallback reason tells the user `because`."""
    assert source.is_embedded
    assert because in source.fallback_reason


def run_concurrently(workers: list, timeout: float | None = None) -> None:
    """Start every thread (or process) at once, then wait for each to end."""
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No developer .env, no real network: default remotes are unreachable, the cache is private to the test."""
    for key in ("NACE_MODEL_URI", "NACE_DATA_URI", "NACE_S3_ENDPOINT", "NACE_CACHE_DIR", "MLFLOW_TRACKING_URI",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NACE_MAX_TRAINING_RUNS", "NACE_MAX_DOWNLOAD_MB",
                "NACE_MIN_DOWNLOAD_KBPS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NACE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NACE_S3_ENDPOINT", closed_port_endpoint())
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("NACE_WARM_UP", "0")  # no background work behind each page test; its own tests turn it on


@pytest.fixture(scope="session")
def migrated_mlflow_store(tmp_path_factory) -> Path:
    """An empty local MLflow store, made once: MLflow takes seconds to migrate a new SQLite file to its schema."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def local_mlflow(migrated_mlflow_store, tmp_path) -> Path:
    """The test's cache folder starts with the empty store MLflow would create there (for tests that log runs)."""
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    return Path(shutil.copy(migrated_mlflow_store, cache / "mlflow.db"))


@pytest.fixture(scope="session")
def demo_frame() -> pl.DataFrame:
    from nace_app.data.tables import load_labelled
    from nace_app.sources.resolve import embedded_data_dir

    return load_labelled(embedded_data_dir())


@pytest.fixture(scope="session")
def tiny_frame(demo_frame) -> pl.DataFrame:
    """About 300 real demo rows over 15 classes."""
    return demo_frame.filter(pl.col("code").is_in(CLASSES_IN_TINY_DATA))


def _train_library_model(frame: pl.DataFrame, folder: Path, attention: bool = False, with_encoder: bool = True,
                         ngram: bool = False, label_attention_heads: int | None = None, epochs: int = 3) -> Path:
    """Train and `save()` with torchTextClassifiers itself, as the published training script does."""
    import torch
    from sklearn.preprocessing import LabelEncoder
    from torchTextClassifiers import ModelConfig, TrainingConfig, torchTextClassifiers
    from torchTextClassifiers.model.components import AttentionConfig
    from torchTextClassifiers.tokenizers import NGramTokenizer, WordPieceTokenizer
    from torchTextClassifiers.value_encoder import ValueEncoder

    torch.manual_seed(0)
    texts = np.asarray(frame["label"].to_list())
    codes = np.asarray(frame["code"].to_list())
    if ngram:  # trained on raw text, as the library does it (our training cleans first)
        tokenizer = NGramTokenizer(min_count=1, min_n=3, max_n=6, num_tokens=2000, len_word_ngrams=1,
                                   training_text=texts.tolist())
    else:
        tokenizer = WordPieceTokenizer(vocab_size=600, output_dim=125 if attention else None)
        tokenizer.train(texts.tolist())
    encoder = LabelEncoder().fit(codes)
    config = ModelConfig(
        embedding_dim=96 if attention else 32,
        num_classes=len(encoder.classes_),
        attention_config=AttentionConfig(n_layers=1, n_head=4, n_kv_head=4, sequence_len=125) if attention else None,
        n_heads_label_attention=label_attention_heads,
    )
    value_encoder = ValueEncoder(encoder) if with_encoder else None
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=config, value_encoder=value_encoder)
    labels = codes if with_encoder else encoder.transform(codes)
    training = TrainingConfig(num_epochs=epochs, batch_size=16, lr=0.01, num_workers=0, accelerator="cpu",
                              raw_labels=with_encoder, save_path=str(folder / "save"),
                              trainer_params={"enable_progress_bar": False,
                                              "default_root_dir": str(folder), "enable_model_summary": False})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 300 rows: a second thread only doubles the CPU, and takes it from the other worker
    try:
        ttc.train(texts, labels, training, X_val=texts[:40], y_val=labels[:40], verbose=False)
    finally:
        torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")
    ttc.save(folder / "saved")
    return folder / "saved"


def library_model_fixture(name: str, description: str, **architecture):
    """A session fixture `name`: the folder of a model of `architecture` trained on the tiny frame by the library.

    Under xdist, the first worker to ask trains it into the run's common temporary folder, under a lock, and the
    others read that folder: tests never write into a fixture's model."""

    def model_dir(tiny_frame, tmp_path_factory, worker_id) -> Path:
        if worker_id == "master":  # one process: nobody to share with
            return _train_library_model(tiny_frame, tmp_path_factory.mktemp(name), **architecture)
        shared = tmp_path_factory.getbasetemp().parent / name  # this run's folder, above every worker's
        with open(f"{shared}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (shared / "complete").is_file():
                shutil.rmtree(shared, ignore_errors=True)  # what a failed attempt left
                shared.mkdir()
                _train_library_model(tiny_frame, shared, **architecture)
                (shared / "complete").touch()
        return shared / "saved"

    model_dir.__doc__ = description
    return pytest.fixture(scope="session", name=name)(model_dir)


bag_model_dir = library_model_fixture("bag_model_dir", "The notebook's plain embedding bag, saved with its value encoder.")
ngram_model_dir = library_model_fixture(
    "ngram_model_dir", "fastText-style: the library's NGramTokenizer (character 3-6-grams in 2,000 buckets) and mean pooling.",
    ngram=True)
attention_model_dir = library_model_fixture(
    "attention_model_dir", "The pretrained configuration (embedding 96, one layer of 4 heads, output_dim 125), without value "
    "encoder; one epoch, the costliest fixture: its tests check the window, padding and forward, never accuracy.",
    attention=True, with_encoder=False, epochs=1)
label_attention_model_dir = library_model_fixture(
    "label_attention_model_dir", "Label attention (4 heads over 32 dimensions): one sentence embedding per class.",
    label_attention_heads=4)


@pytest.fixture(scope="session")
def tiny_parquet(tiny_frame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "generation_None_temp08.parquet"
    tiny_frame.write_parquet(path)
    return path


MODEL_PREFIX = "diffusion/mlflow-artifacts"
DATA_KEY = "diffusion/funathon/2026/project2/generation_None_temp08.parquet"


@pytest.fixture(scope="session")
def s3_server():
    """A real local S3 (moto's threaded server), as s3fs's own tests use."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


def make_public_bucket(client, name: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if name not in existing:
        client.create_bucket(Bucket=name)
    client.put_bucket_policy(Bucket=name, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"],
                       "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}],
    }))


def upload_folder(client, folder: Path, bucket: str, prefix: str, skip: tuple[str, ...] = ()) -> None:
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in skip:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())


@pytest.fixture(scope="session")
def sspcloud_layout(s3_client, attention_model_dir, tiny_parquet):
    """Public buckets laid out like SSP Cloud: the model under projet-funathon, the data under projet-formation."""
    make_public_bucket(s3_client, "projet-funathon")
    make_public_bucket(s3_client, "projet-formation")
    upload_folder(s3_client, attention_model_dir, "projet-funathon", MODEL_PREFIX)
    s3_client.put_object(Bucket="projet-formation", Key=DATA_KEY, Body=tiny_parquet.read_bytes())
    return s3_client


@pytest.fixture(scope="session")
def library_forward_classifier(tiny_frame):
    """Two attention layers: no cut path, so explanations swap the embedding layer's output with a hook."""
    import torch
    from torchTextClassifiers import ModelConfig, torchTextClassifiers
    from torchTextClassifiers.model.components import AttentionConfig
    from torchTextClassifiers.tokenizers import WordPieceTokenizer

    torch.manual_seed(0)
    tokenizer = WordPieceTokenizer(vocab_size=300, output_dim=40)
    tokenizer.train(tiny_frame["label"].to_list())
    config = ModelConfig(embedding_dim=32, num_classes=4,
                         attention_config=AttentionConfig(n_layers=2, n_head=2, n_kv_head=2, sequence_len=40))
    ttc = torchTextClassifiers(tokenizer=tokenizer, model_config=config)
    torch.nn.init.normal_(ttc.pytorch_model.classification_head.net.weight)
    from nace_app.model.classifier import Classifier
    from nace_app.model.formats import LoadedModel

    classifier = Classifier(LoadedModel(ttc, ["10.71", "10.72", "62.10", "62.20"], "test", "test"))
    assert not classifier.forward.can_cut
    return classifier
