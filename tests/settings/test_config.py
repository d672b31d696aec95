"""Settings: where values come from, one-line errors for values that cannot be used, the cache folder fallback,
and passwords inside URIs kept out of every report."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nace_app.settings.config import load_settings, redact_text, redact_uri
from nace_app.settings.errors import NaceAppError


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("NACE_CONNECT_TIMEOUT", "five", "a number of seconds greater than 0"),
    ("NACE_CONNECT_TIMEOUT", "0", "a number of seconds greater than 0"),
    ("NACE_CONNECT_TIMEOUT", "-3", "a number of seconds greater than 0"),
    ("NACE_CONNECT_TIMEOUT", "nan", "a number of seconds greater than 0"),
    ("NACE_MAX_TRAINING_RUNS", "two", "a whole number of training runs at once, 1 or more"),
    ("NACE_MAX_TRAINING_RUNS", "1.5", "a whole number of training runs at once, 1 or more"),
    ("NACE_MAX_TRAINING_RUNS", "0", "a whole number of training runs at once, 1 or more"),
    ("NACE_MAX_DOWNLOAD_MB", "2GB", "a whole number of megabytes, 1 or more"),
    ("NACE_MIN_DOWNLOAD_KBPS", "fast", "a number of kilobytes per second greater than 0"),
    ("NACE_MIN_DOWNLOAD_KBPS", "inf", "a number of kilobytes per second greater than 0"),
])
def test_unusable_number_is_a_one_line_error_naming_the_variable_and_what_it_expects(monkeypatch, variable, value,
                                                                                     expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(NaceAppError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable} must be") and expected in message and repr(value) in message
    assert "\n" not in message


def test_numbers_are_read_with_surrounding_spaces(monkeypatch):
    monkeypatch.setenv("NACE_CONNECT_TIMEOUT", " 2.5 ")
    monkeypatch.setenv("NACE_MAX_TRAINING_RUNS", "3")
    monkeypatch.setenv("NACE_MAX_DOWNLOAD_MB", "512")
    monkeypatch.setenv("NACE_MIN_DOWNLOAD_KBPS", " 0.5 ")
    settings = load_settings()
    assert (settings.connect_timeout, settings.max_training_runs, settings.max_download_mb) == (2.5, 3, 512)
    assert settings.min_download_kbps == 0.5


def test_a_bad_number_in_dotenv_is_reported_like_one_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NACE_CONNECT_TIMEOUT")
    (tmp_path / ".env").write_text("NACE_CONNECT_TIMEOUT=soon\n")
    with pytest.raises(NaceAppError, match="NACE_CONNECT_TIMEOUT must be a number of seconds"):
        load_settings()


def test_environment_wins_over_dotenv_which_wins_over_streamlit_secrets(tmp_path):
    """In a fresh process with Streamlit imported, as in the app, so that secrets are really read from the file."""
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        'NACE_CONNECT_TIMEOUT = "7"\nNACE_MAX_TRAINING_RUNS = "3"\nNACE_DATA_URI = "s3://from-secrets/d.parquet"\n'
        'NACE_MODEL_URI = "s3://from-secrets/model/"\n')
    (tmp_path / ".env").write_text("NACE_CONNECT_TIMEOUT=9\nNACE_MODEL_URI=s3://from-dotenv/model/\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("NACE_", "MLFLOW_", "AWS_"))}
    environment.update(HOME=str(tmp_path), NACE_CACHE_DIR=str(tmp_path / "cache"),
                       NACE_MODEL_URI="s3://from-environment/model/")
    script = ("import json, streamlit\nfrom nace_app.settings.config import load_settings\ns = load_settings()\n"
              "print(json.dumps([s.model_uri, s.connect_timeout, s.data_uri, s.max_training_runs, s.data_uri_explicit]))")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    model_uri, timeout, data_uri, runs, data_explicit = json.loads(result.stdout.strip().splitlines()[-1])
    assert model_uri == "s3://from-environment/model/"  # environment over .env and secrets
    assert timeout == 9.0  # .env over secrets
    assert (data_uri, runs) == ("s3://from-secrets/d.parquet", 3)  # secrets when nothing else says
    assert data_explicit  # a URI set in secrets is explicit too


def test_cache_dir_that_is_a_file_falls_back_to_a_temporary_folder_with_a_notice(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("I am a file")
    monkeypatch.setenv("NACE_CACHE_DIR", str(not_a_folder))
    settings = load_settings()
    assert settings.cache_dir != not_a_folder and settings.cache_dir.is_dir()
    (settings.cache_dir / "probe").write_text("writable")
    assert settings.cache_notice and "\n" not in settings.cache_notice
    assert f"NACE_CACHE_DIR {not_a_folder} cannot be written" in settings.cache_notice
    assert str(settings.cache_dir) in settings.cache_notice
    assert settings.to_dict()["cache_notice"] == settings.cache_notice


def test_cache_dir_under_a_file_falls_back_too(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("NACE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    settings = load_settings()
    assert settings.cache_notice and "Not a directory" in settings.cache_notice
    assert settings.cache_dir.is_dir()


def test_writable_cache_dir_gives_no_notice(tmp_path):
    settings = load_settings()
    assert settings.cache_dir == tmp_path / "cache" and settings.cache_notice is None


def _without_permission_override() -> None:
    """In the child: drop root's power to write through permission bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, effective from the exec on
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read-only folders are checked on Linux")
def test_read_only_cache_dir_falls_back_to_a_temporary_folder_with_a_notice(tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NACE_")}
    environment.update(NACE_CACHE_DIR=str(read_only), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    script = "import json\nfrom nace_app.settings.config import load_settings\ns = load_settings()\n" \
             "print(json.dumps([str(s.cache_dir), s.cache_notice]))"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=120, preexec_fn=_without_permission_override if os.geteuid() == 0 else None)
    read_only.chmod(0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    cache_dir, notice = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(cache_dir).parent == tmp_path / "tmp"
    assert notice.startswith(f"NACE_CACHE_DIR {read_only} cannot be written (Permission denied)")


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://user:pw@mlflow.example:5000/", "http://user:***@mlflow.example:5000/"),
    ("https://alice:p%40ss@host/x?token=abc&page=2", "https://alice:***@host/x?token=***&page=2"),
    ("https://host/data.parquet?X-Amz-Signature=abcd", "https://host/data.parquet?X-Amz-Signature=***"),
    ("http://user@host/", "http://user@host/"),
    ("s3://bucket/prefix/", "s3://bucket/prefix/"),
    ("runs:/0123/model", "runs:/0123/model"),
    ("embedded", "embedded"),
    ("/a/local/folder", "/a/local/folder"),
    (None, None),
])
def test_redact_uri_hides_passwords_and_secret_query_values_only(uri, expected):
    assert redact_uri(uri) == expected


def test_redact_text_hides_uris_and_known_secrets_inside_library_messages():
    message = "API request to http://bob:hunter2@host/api failed; password hunter2 rejected"
    assert redact_text(message, ["hunter2"]) == "API request to http://bob:***@host/api failed; password *** rejected"


def test_settings_to_dict_redacts_passwords_inside_uris(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:s3cret-pw@127.0.0.1:5000")
    monkeypatch.setenv("NACE_DATA_URI", "https://reader:other-s3cret@127.0.0.1/d.parquet")
    public = json.dumps(load_settings().to_dict())
    assert "s3cret" not in public
    assert "http://user:***@127.0.0.1:5000" in public and "https://reader:***@127.0.0.1/d.parquet" in public


def test_cli_info_with_a_file_as_cache_dir_works_and_reports_the_notice(tmp_path):
    """The command line end to end: no traceback, the temporary folder is used and `info --json` says why."""
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("I am a file")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("NACE_", "MLFLOW_"))}
    environment.update(NACE_CACHE_DIR=str(not_a_folder), NACE_MODEL_URI="embedded", NACE_DATA_URI="embedded",
                       TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-m", "nace_app", "info", "--json"], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert Path(settings["cache_dir"]).parent == tmp_path / "tmp"
    assert settings["cache_notice"].startswith(f"NACE_CACHE_DIR {not_a_folder} cannot be written")
