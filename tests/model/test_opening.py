"""One opener for every caller: the configured model with its fallback, any URI, and no pickles when told so."""

import pickle

import pytest

from nace_app.model.formats import save_model
from nace_app.model.opening import open_model
from nace_app.settings.config import load_settings
from nace_app.settings.errors import NaceAppError


def test_the_default_falls_back_to_the_embedded_model_and_says_why():
    opened = open_model(None, load_settings())  # the conftest makes the default S3 endpoint unreachable
    assert opened.source.is_embedded and opened.source.fallback_reason
    assert opened.classifier.num_classes == 651


def test_pickles_are_refused_when_the_caller_forbids_them(bag_model_dir, tmp_path, monkeypatch):
    with pytest.raises(NaceAppError, match="own format"):
        open_model(str(bag_model_dir), load_settings(), allow_pickle=False)
    library = open_model(str(bag_model_dir), load_settings())  # the operator's own configuration may
    own = save_model(library.classifier.loaded.ttc, library.classifier.labels, tmp_path / "own")
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    assert open_model(str(own), load_settings(), allow_pickle=False).classifier.labels == library.classifier.labels


def test_an_explicit_uri_that_fails_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(NaceAppError):
        open_model(str(tmp_path / "nothing-here"), load_settings())


def test_a_library_model_without_encoder_reads_the_data_only_then(attention_model_dir, tiny_frame):
    from nace_app.model.opening import DataSet
    from nace_app.sources.resolve import ResolvedSource

    calls = []

    def loader(settings):
        calls.append(1)
        return DataSet(ResolvedSource("tiny", "tiny", None, True), tiny_frame)

    opened = open_model(str(attention_model_dir), load_settings(), data_loader=loader)
    assert calls == [1] and opened.data is not None and len(opened.classifier.labels) == tiny_frame["code"].n_unique()
