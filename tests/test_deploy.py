"""Deployment files: the image runs the README's command and checks Streamlit's health endpoint, and the Helm
chart is consistent (rendered with Helm itself when a kept package provides it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from nace_app.app.serving import free_port, wait_for_health

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
CHART = REPO / "deploy" / "helm" / "nace-explorer"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec) form; the shell form is refused, since it would not receive signals."""
    assert arguments.startswith("["), f"use the exec form, not {arguments!r}"
    return json.loads(arguments)


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def readme_run_command() -> list[str]:
    """The app's run command as the README's Quickstart gives it."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.strip().startswith("uv run streamlit run"):
            return shlex.split(line.split("#", 1)[0])
    raise AssertionError("the README gives no `uv run streamlit run` command")


def healthcheck_command() -> list[str]:
    (arguments,) = [a for k, a in dockerfile_instructions() if k == "HEALTHCHECK"]
    _, _, command = arguments.partition("CMD ")
    return exec_form(command.strip())


def test_image_runs_the_readmes_run_command():
    commands = [exec_form(a) for k, a in dockerfile_instructions() if k == "CMD"]
    assert not [a for k, a in dockerfile_instructions() if k == "ENTRYPOINT"]
    assert commands == [readme_run_command()] == [["uv", "run", "streamlit", "run", "app.py"]]


def test_image_health_check_asks_streamlits_health_endpoint():
    command = " ".join(healthcheck_command())
    assert re.findall(r"'(/[^']*)'", command) == ["/_stcore/health"]  # the one path it asks for
    assert "http://127.0.0.1:" in command and "STREAMLIT_SERVER_PORT" in command


def test_image_is_python_311_slim_runs_as_a_user_and_takes_address_and_port_from_the_environment():
    instructions = dockerfile_instructions()
    assert [a for k, a in instructions if k == "FROM"] == ["python:3.11-slim"]
    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    environment = dockerfile_env()
    assert {"STREAMLIT_SERVER_ADDRESS", "STREAMLIT_SERVER_PORT", "UV_NO_SYNC"} <= set(environment)
    build = " ".join(a for k, a in instructions if k in ("RUN", "ARG"))
    assert "whl/cpu" in build and "--frozen" in build  # CPU torch; everything else exactly as locked


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_entry_command_with_the_images_environment_answers_the_health_check(tmp_path):
    """The image's CMD and HEALTHCHECK, run here with its ENV; only the port, address and folders are local."""
    port = str(free_port())
    environment = {**os.environ, **dockerfile_env(), "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
                   "STREAMLIT_SERVER_PORT": port, "NACE_CACHE_DIR": str(tmp_path / "cache"),
                   "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))}
    command = [a for k, a in dockerfile_instructions() if k == "CMD"][0]
    with (tmp_path / "streamlit.log").open("w") as log:
        server = subprocess.Popen(exec_form(command), cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for_health(f"http://127.0.0.1:{port}", 120):
            pytest.fail(f"no health answer within 120 s: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        check = subprocess.run(healthcheck_command(), env=environment, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        server.terminate()
        server.wait(timeout=60)


# --- The Helm chart -------------------------------------------------------------------------------------------------


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_files_without_templating_parse_and_size_the_pods_from_the_measured_peak():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "nace-explorer"
    values = chart_values()
    assert values["replicaCount"] > 1
    assert values["resources"]["requests"]["memory"] == "2Gi"  # a reviewer session: 1.82 GB with the training process
    assert values["resources"]["limits"]["memory"] == "3Gi"
    assert values["ingress"]["className"] == "nginx"


def test_every_value_the_templates_use_is_defined_in_values_yaml():
    values = chart_values()
    used = set()
    for template in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()))
    assert used
    for path in sorted(used):
        node = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f".Values.{path} is not in values.yaml"
            node = node[part]


def render_chart(values: dict) -> list[dict]:
    """Every manifest of the chart rendered by Helm: its Python SDK if installed, else the helm binary."""
    try:
        import helm_python
    except ImportError:
        helm_python = None
    if helm_python is not None:
        lint = helm_python.lint(str(CHART), values, strict=True)
        assert not lint["errors"] and not [m for m in lint["messages"] if m["severity"] >= 2], lint
        rendered = helm_python.Chart.load(str(CHART)).render(values, name="nace", namespace="stats", is_install=True)
        texts = [text for path, text in rendered.items() if path.endswith(".yaml")]
    elif shutil.which("helm"):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
            json.dump(values, values_file)
            values_file.flush()
            result = subprocess.run(["helm", "template", "nace", str(CHART), "-n", "stats", "-f", values_file.name],
                                    capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        texts = [result.stdout]
    else:
        pytest.skip("no Helm here: neither the helm binary nor the helm-python-sdk package (a Python binding of "
                    "Helm's Go SDK) is installed; the chart's static checks above still ran")
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def test_chart_renders_replicas_with_sticky_sessions_shared_mlflow_and_the_cache_on_an_empty_dir():
    manifests = render_chart({
        "nace": {"modelUri": "s3://projet-funathon/diffusion/mlflow-artifacts/",
                 "dataUri": "s3://projet-formation/diffusion/funathon/2026/project2/generation_None_temp08.parquet"},
        "mlflow": {"trackingUri": "https://mlflow.example.org", "existingSecret": "mlflow-credentials"},
    })
    by_kind = {m["kind"]: m for m in manifests}
    assert {"Deployment", "Service", "Ingress", "Secret", "PodDisruptionBudget"} <= set(by_kind)
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["NACE_MODEL_URI"].startswith("s3://") and env["NACE_DATA_URI"].startswith("s3://")
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.org"
    assert env["MLFLOW_TRACKING_PASSWORD"] == {"secretKeyRef": {"name": "mlflow-credentials",
                                                                "key": "MLFLOW_TRACKING_PASSWORD"}}
    assert "STREAMLIT_SERVER_COOKIE_SECRET" in env  # the same on every replica
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[env["NACE_CACHE_DIR"]]]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_stcore/health"
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                      "limits": {"cpu": "2", "memory": "3Gi"}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    annotations = by_kind["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"]
    assert by_kind["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == \
        by_kind["Service"]["metadata"]["name"]


def test_chart_with_default_values_falls_back_to_the_apps_defaults():
    manifests = render_chart({})
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "NACE_MODEL_URI" not in names and "NACE_DATA_URI" not in names  # not explicit: fallback rule applies
    assert "MLFLOW_TRACKING_URI" not in names
