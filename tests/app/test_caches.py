"""The shared caches: the background warm-up that spares a server's first "Code it" its one-off work."""

import os
import subprocess
import sys

import pytest

from nace_app.app import caches
from nace_app.model.formats import load_model
from nace_app.model.opening import DataSet
from nace_app.sources.resolve import ResolvedSource


@pytest.mark.parametrize("model", ["embedded", "bag"])
def test_the_warm_up_fills_the_disk_caches_once_per_model_and_data_and_builds_torch_only_where_numpy_cannot_explain(
        model, tiny_frame, tmp_path, monkeypatch, bag_model_dir):
    from nace_app.model.classifier import Classifier
    from nace_app.sources.resolve import embedded_model_dir

    monkeypatch.setenv("NACE_WARM_UP", "1")
    caches.default_workspace.clear()
    folder = {"embedded": embedded_model_dir(), "bag": bag_model_dir}[model]
    classifier = Classifier(load_model(folder, lambda: tiny_frame["code"].to_list()))
    data = DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)
    thread = caches.warm_up(classifier, data)
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive() and not caches.similar_examples_pending(classifier, data)
    assert (classifier._torch_parts is not None) == (classifier.numpy_forward is None) == (model == "bag")
    cache_dir = tmp_path / "cache"
    assert list((cache_dir / "neighbours").glob(f"{classifier.fingerprint}-*.npy"))
    assert any(classifier.fingerprint in p.name for p in cache_dir.rglob("*") if p.is_file() and "neighbours" not in str(p))
    assert caches.warm_up(classifier, data) is None  # once per server, model and data


def test_no_warm_up_when_the_operator_turns_it_off(tiny_frame):
    from nace_app.model.classifier import Classifier
    from nace_app.sources.resolve import embedded_model_dir

    caches.default_workspace.clear()  # NACE_WARM_UP=0 in every test's environment
    data = DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)
    assert caches.warm_up(Classifier(load_model(embedded_model_dir())), data) is None


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts with one thread anyway")
def test_sharing_the_cores_leaves_numpys_blas_and_any_later_one_one_thread_each():
    """In a fresh interpreter: the limit is process-wide, and OpenBLAS's second thread spun after each product."""
    script = ("import os, numpy\nfrom threadpoolctl import threadpool_info\nfrom nace_app.app import caches\n"
              "assert any(p['num_threads'] > 1 for p in threadpool_info() if p['user_api'] == 'blas'), 'one core?'\n"
              "caches.share_the_cores()\n"
              "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}),"
              " os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["[1]", "1", "1"]
