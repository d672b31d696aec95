"""Streamlit caches shared by every session: the workspace, opened models, split scores, explanations.

Everything cached here is shared across sessions and threads, so nothing returned from it is ever mutated.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import streamlit as st

from nace_app.app import figures
from nace_app.data.tables import fingerprint
from nace_app.explain import attributions, class_words
from nace_app.model.classifier import Candidate, Classifier
from nace_app.model.opening import DataSet, OpenedModel, Workspace, open_model, open_workspace
from nace_app.review import calibration, conformal
from nace_app.review.calibration import runtime_calibration
from nace_app.review.corrections import CorrectionStore
from nace_app.review.disk_caches import fill_disk_caches
from nace_app.review.neighbours import Neighbour, NeighbourIndex
from nace_app.review.prediction_cache import cached_probabilities
from nace_app.settings.config import load_settings

logger = logging.getLogger(__name__)
_warmed: set[str] = set()
_warming = threading.Lock()
_blas_limited = False  # `share_the_cores` has limited the BLAS libraries (once per server: it reads the loaded libraries)
_embedded: set[str] = set()  # warm-ups past the training rows' embeddings (done, or failed: a click then embeds)
_embedding_rows = threading.Lock()  # the warm-up and a first click embed the training rows once, not side by side

BY_FINGERPRINT = {Classifier: lambda classifier: classifier.fingerprint,
                  DataSet: lambda data: data.fingerprint,
                  pl.DataFrame: fingerprint}


def share_the_cores() -> None:
    """One thread per session for the numeric libraries: N sessions (and a training run) then ask for N threads, not
    2N on 2 cores.

    torch: on 2 shared cores this halved the median time to code and explain with 10 sessions
    (benchmarks/bench_load.py). Predicting needs no torch, so it is not imported here: until something imports it,
    OMP_NUM_THREADS=1 makes it start with one thread. numpy's OpenBLAS: its second thread spun after each product
    of a "Code it", a quarter of the server's CPU for the click, taken from the other sessions and the training run.
    """
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        os.environ["OPENBLAS_NUM_THREADS"] = "1"  # a BLAS loaded later (scipy's) starts with one thread
        threadpool_limits(1, user_api="blas")  # those loaded already
        _blas_limited = True
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = "1"
    elif torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def warm_up(classifier: Classifier, data: DataSet) -> threading.Thread | None:
    """Once per server, model and data, in the background: what the first "Code it" would otherwise wait for.

    In the order a first click needs them: the torch model that explains (only for architectures numpy cannot
    explain), the shifted text's scores (the measured accuracy next to the verdict), the training rows' embeddings
    (similar examples, which the page shows once they are ready) and the test split's scores (Review), the last two
    written by a child process (`review.disk_caches`) to the disk caches that the shared caches then read in
    milliseconds. Off with NACE_WARM_UP=0. Returns the thread when it started one.
    """
    settings = default_workspace().settings
    key = f"{classifier.fingerprint}-{data.fingerprint}"
    with _warming:
        if not settings.warm_up or key in _warmed:
            return None
        _warmed.add(key)

    def work() -> None:
        try:
            if classifier.numpy_forward is None:  # a mean-pooling model predicts and explains without torch
                _ = classifier.model
            shifted_probabilities(classifier)
            fill_disk_caches(classifier, data.splits.train, data.splits.test["label"].to_list(), data.fingerprint,
                             settings.cache_dir, embedding=_embedding_rows, embedded=lambda: _embedded.add(key))
        except Exception:  # noqa: BLE001  # a failed warm-up only means the first click does the work, and says why
            logger.exception("the warm-up of %s failed; the first request will do the work", classifier.name)
        finally:
            _embedded.add(key)

    thread = threading.Thread(target=work, name="warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner="Loading the model and data…")
def default_workspace() -> Workspace:
    """The configured sources (or the embedded fallback), shared by every session; never mutated."""
    settings = load_settings()
    workspace = open_workspace(settings, calibrate=runtime_calibration(settings.cache_dir))
    _ = workspace.data  # resolve the data now so the banner can say where it comes from
    return workspace


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def opened_model(uri: str) -> OpenedModel:
    """Any model the picker names, loaded once per server; only our own format (a typed run id is user input)."""
    workspace = default_workspace()
    return open_model(uri, workspace.settings, allow_pickle=False, data=workspace.data,
                      calibrate=runtime_calibration(workspace.settings.cache_dir))


def opened_classifier(uri: str) -> Classifier:
    """A model of the picker (a run trained here, by its folder) without selecting it."""
    return opened_model(uri).classifier


@st.cache_resource(show_spinner="Scoring the split…", max_entries=8, hash_funcs=BY_FINGERPRINT)
def split_probabilities(classifier: Classifier, data: DataSet, split: str) -> np.ndarray:
    """A split's probabilities, shared and never copied (10,500 x classes): from the disk cache, else computed once."""
    texts = getattr(data.splits, split)["label"].to_list()
    key = data.fingerprint if split == "test" else f"{data.fingerprint}-{split}"
    return cached_probabilities(classifier, texts, key, default_workspace().settings.cache_dir)


def test_probabilities(classifier: Classifier, data: DataSet) -> np.ndarray:
    return split_probabilities(classifier, data, "test")


@st.cache_resource(show_spinner=False, max_entries=8, hash_funcs=BY_FINGERPRINT)
def review_table(classifier: Classifier, data: DataSet):
    from nace_app.review.tables import test_table

    return test_table(data.splits.test, test_probabilities(classifier, data), classifier.labels,
                      classifier.nomenclature)


@st.cache_resource(show_spinner=False, max_entries=8, hash_funcs=BY_FINGERPRINT)
def test_evaluation(classifier: Classifier, data: DataSet):
    from nace_app.review.evaluation import evaluate

    return evaluate(data.splits.test["code"].to_list(), test_probabilities(classifier, data), classifier.labels,
                    classifier.nomenclature)


@st.cache_resource
def training_queue():
    """One queue per server: at most NACE_MAX_TRAINING_RUNS runs at once."""
    from nace_app.training.jobs import TrainingQueue

    return TrainingQueue(default_workspace().settings.max_training_runs)


@st.cache_resource
def job_registry():
    """Every training job of this server, so that a reloaded page can reattach to its own."""
    from nace_app.training.jobs import JobRegistry

    return JobRegistry()


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def top_candidates(classifier: Classifier, text: str) -> list[Candidate]:
    """The ten best codes; the page slices them for any k without recomputing."""
    return classifier.predict([text], top_k=min(10, classifier.num_classes))[0].candidates


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def reading(classifier: Classifier, text: str) -> tuple[float, int | None]:
    """(share of unknown words, where a windowed model stops reading or None)."""
    from nace_app.model.tokenization import read_until

    return classifier.unknown_token_share(text), read_until(classifier.tokenizer, text)


@st.cache_data(show_spinner="Explaining…", max_entries=1024, hash_funcs=BY_FINGERPRINT)
def explanation(classifier: Classifier, text: str, code: str) -> attributions.Explanation:
    return attributions.integrated_gradients(classifier, text, [code])[0]


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def faithfulness_check(classifier: Classifier, text: str, code: str):
    return attributions.faithfulness(classifier, text, explanation(classifier, text, code))


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=BY_FINGERPRINT)
def occlusion_drops(classifier: Classifier, text: str, code: str) -> list[float]:
    return attributions.occlusion(classifier, text, explanation(classifier, text, code).words, [code])[code]


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=BY_FINGERPRINT)
def label_attention_figure(classifier: Classifier, text: str, code: str):
    words = attributions.label_attention(classifier, text, [code])[code]
    return figures.signed_bars([w.word for w in words], [w.score for w in words],
                               f"Label attention of {code} over the words", "attention")


@st.cache_resource(show_spinner=False, max_entries=16, hash_funcs=BY_FINGERPRINT)
def model_calibration(classifier: Classifier) -> calibration.Calibration:
    """The model's temperature and conformal scores (calibration.json, or fitted on the shifted text when opened)."""
    return calibration.calibration_of(classifier)


@st.cache_resource(show_spinner="Calibrating the prediction sets…", max_entries=32, hash_funcs=BY_FINGERPRINT)
def calibrator(classifier: Classifier, level: float) -> conformal.ConformalCalibrator:
    return model_calibration(classifier).calibrator(level)


@st.cache_resource(show_spinner="Measuring the prediction sets…", max_entries=32, hash_funcs=BY_FINGERPRINT)
def coverage_report(classifier: Classifier, data: DataSet, level: float) -> conformal.CoverageReport:
    """The sets' coverage on the test split (none of its rows calibrated them), by NACE section."""
    return conformal.held_out_report(calibrator(classifier, level), test_probabilities(classifier, data),
                                     data.splits.test["code"].to_list(), classifier.labels,
                                     classifier.nomenclature.section_of)


@st.cache_resource(show_spinner="Scoring the shifted text…", max_entries=8, hash_funcs=BY_FINGERPRINT)
def shifted_probabilities(classifier: Classifier) -> np.ndarray:
    """The probabilities of the shifted text's `report` part (1,180 rows: computed, not kept on disk)."""
    return classifier.predict_proba(calibration.shifted_text(calibration.REPORT_PART)["label"].to_list())


@st.cache_resource(show_spinner="Measuring the prediction sets…", max_entries=32, hash_funcs=BY_FINGERPRINT)
def held_out_figures(classifier: Classifier, data: DataSet, level: float) -> list[calibration.HeldOutFigures]:
    """The sets and the top-1 calibration on the test split and on the shifted `report` part, side by side."""
    fitted = model_calibration(classifier)
    report_codes = calibration.shifted_text(calibration.REPORT_PART)["code"].to_list()
    return [calibration.held_out_figures("test split", fitted, level, test_probabilities(classifier, data),
                                         conformal.true_indices(classifier.labels, data.splits.test["code"].to_list())),
            calibration.held_out_figures("shifted text (report part)", fitted, level, shifted_probabilities(classifier),
                                         conformal.true_indices(classifier.labels, report_codes))]


@st.cache_resource(show_spinner=False, max_entries=64, hash_funcs=BY_FINGERPRINT)
def rule_record(classifier: Classifier, rule: str, score_name: str, threshold: float,
                level: float) -> calibration.RuleRecord:
    """How an automatic-coding rule did on the shifted `report` part, per model and rule settings."""
    return calibration.rule_record(rule, score_name, threshold, level, model_calibration(classifier),
                                   shifted_probabilities(classifier),
                                   calibration.shifted_text(calibration.REPORT_PART)["code"].to_list(), classifier.labels)


def rule_records(classifier: Classifier, rule: str, score_name: str, threshold: float,
                 level: float) -> tuple[calibration.RuleRecord, calibration.RuleRecord]:
    """The chosen rule's record and the alternative's."""
    return (rule_record(classifier, rule, score_name, threshold, level),
            rule_record(classifier, calibration.other_rule(rule), score_name, threshold, level))


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def prediction_set(classifier: Classifier, text: str, level: float) -> list[str]:
    """The codes of `text`'s set at `level`, most probable first."""
    indices = calibrator(classifier, level).sets(classifier.predict_proba([text]))[0]
    return [classifier.labels[i] for i in indices]


@st.cache_resource(show_spinner="Embedding the training rows for similar examples (once per model)…", max_entries=4,
                   hash_funcs=BY_FINGERPRINT)
def neighbour_index(classifier: Classifier, data: DataSet) -> NeighbourIndex:
    with _embedding_rows:  # behind a warm-up that is embedding them: then read from its disk cache in milliseconds
        return NeighbourIndex.build(classifier, data.splits.train, default_workspace().settings.cache_dir)


def similar_examples_pending(classifier: Classifier, data: DataSet) -> bool:
    """Whether a warm-up has yet to embed the training rows: a click then shows the rest of its page at once."""
    key = f"{classifier.fingerprint}-{data.fingerprint}"
    return key in _warmed and key not in _embedded


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs=BY_FINGERPRINT)
def similar_examples(classifier: Classifier, data: DataSet, text: str, k: int = 5) -> list[Neighbour]:
    return neighbour_index(classifier, data).nearest(text, k)


@st.cache_resource
def correction_store() -> CorrectionStore:
    """One SQLite file per server under the cache folder; the store holds only its path, so sharing it is safe."""
    return CorrectionStore(default_workspace().settings.cache_dir)


def class_words_table(classifier: Classifier, data: DataSet) -> pl.DataFrame | None:
    """The per-class words when already computed for (model, test data), else None: computing takes a minute."""
    if not class_words.cache_path(classifier, data.splits.test, default_workspace().settings.cache_dir).is_file():
        return None
    return _class_words(classifier, data)


@st.cache_resource(show_spinner=False, max_entries=4, hash_funcs=BY_FINGERPRINT)
def _class_words(classifier: Classifier, data: DataSet) -> pl.DataFrame:
    return class_words.class_words(classifier, data.splits.test, default_workspace().settings.cache_dir)


def compute_class_words(classifier: Classifier, data: DataSet, progress: Callable[[int, int], None]) -> None:
    """Explain every test row once and keep the table on disk (the button's work; not shared while it runs)."""
    class_words.class_words(classifier, data.splits.test, default_workspace().settings.cache_dir, progress=progress)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=BY_FINGERPRINT)
def evaluation_on(classifier: Classifier, frame: pl.DataFrame):
    from nace_app.review.evaluation import evaluate_classifier

    return evaluate_classifier(classifier, frame)



def batch_folder() -> Path:
    """Where the page's coded uploads are written, a chunk at a time, and read back for the preview and downloads."""
    return default_workspace().settings.cache_dir / "batches"
