"""MLflow tracking without a server: options, URIs passed on, batch limits, container and pod
settings, and what a run without tracking imports (see test_mlflow_server.py for the server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun

from backends.base import RunRequest
from backends.docker.backend import container_config
from backends.docker.container import ContainerSpec
from backends.kubernetes.config import KubernetesConfig, SecretRef
from backends.kubernetes.manifest import COPIED_MARK, JobInputs, render_job
from runner.envs.base import Lock, ResolvedEnv
from runner.tracking.mlflow.client import (
    MAX_ENTITIES,
    MAX_METRICS,
    MAX_PARAMS,
    MAX_TAGS,
    MlflowClient,
    batches,
    proxy_path,
)
from runner.tracking.mlflow.settings import ContainerTracking, absolute_uri, for_container, for_pod

ECHO = """\
    import os
    print(sorted((k, v) for k, v in os.environ.items() if k.startswith("MLFLOW_")))
"""


@pytest.fixture
def echo(make_project: MakeProject) -> Path:
    return make_project("name: echo\nentry_points:\n  main:\n    command: python echo.py\n",
                        files={"echo.py": ECHO}, name="echo")


def test_experiment_options_are_mutually_exclusive(reprun: Reprun, echo: Path) -> None:
    both = reprun("run", str(echo), "--experiment-name", "a", "--experiment-id", "1")
    assert both.code == 2
    assert both.error_lines == ["reprun: error: --experiment-name and --experiment-id are "
                                "mutually exclusive; give one of them"]
    env_both = reprun("run", str(echo), env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                                             "MLFLOW_EXPERIMENT_NAME": "a",
                                             "MLFLOW_EXPERIMENT_ID": "1"})
    assert env_both.code == 2
    assert env_both.error_lines[0].startswith("reprun: error: MLFLOW_EXPERIMENT_NAME and "
                                              "MLFLOW_EXPERIMENT_ID are both set")
    # An option outranks the variables.
    dry = reprun("run", str(echo), "--experiment-id", "7", "--dry-run",
                 env={"MLFLOW_EXPERIMENT_NAME": "a", "MLFLOW_TRACKING_URI": "http://h:1"})
    assert dry.code == 0, dry.stderr


def test_a_uri_that_is_no_server_is_made_absolute_and_passed_on(reprun: Reprun,
                                                               echo: Path) -> None:
    result = reprun("run", str(echo), "--env-manager", "local", "--tracking-uri",
                    "sqlite:///runs/mlflow.db", "--experiment-name", "local")
    assert result.code == 0, result.stderr
    expected = f"sqlite:///{reprun.cwd / 'runs' / 'mlflow.db'}"
    assert (f"[('MLFLOW_EXPERIMENT_NAME', 'local'), ('MLFLOW_TRACKING_URI', '{expected}')]"
            in result.stdout)
    notes = [line for line in result.stderr.splitlines() if "no tracking server" in line]
    assert len(notes) == 1 and "reprun cannot create the MLflow run itself" in notes[0]
    assert reprun.last_record()["mlflow"] is None


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:///mlflow.db", "sqlite:////home/ada/proj/mlflow.db"),
    ("sqlite:///sub/m.db?timeout=5", "sqlite:////home/ada/proj/sub/m.db?timeout=5"),
    ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("file:./mlruns", "file:///home/ada/proj/mlruns"),
    ("file:mlruns", "file:///home/ada/proj/mlruns"),
    ("file:///abs/mlruns", "file:///abs/mlruns"),
    ("mlruns", "/home/ada/proj/mlruns"),
    ("./mlruns", "/home/ada/proj/mlruns"),
    ("/abs/mlruns", "/abs/mlruns"),
    ("databricks://profile", "databricks://profile"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_absolute_uri(uri: str, expected: str) -> None:
    assert absolute_uri(uri, Path("/home/ada/proj")) == expected


def test_batches_keep_within_the_server_limits_and_cut_long_values() -> None:
    params = [(f"p{i}", "v" * (7000 if i == 0 else 1)) for i in range(250)]
    tags = [(f"t{i}", "w" * (9000 if i == 0 else 1)) for i in range(150)]
    metrics = [{"key": "m", "value": float(i), "timestamp": 1, "step": i} for i in range(2500)]
    metrics.append({"key": "k" * 251, "value": 1.0, "timestamp": 1, "step": 0})
    bodies = list(batches(params, metrics, tags))
    for body in bodies:
        counts = [len(body.get(k, [])) for k in ("params", "tags", "metrics")]
        assert counts[0] <= MAX_PARAMS and counts[1] <= MAX_TAGS and counts[2] <= MAX_METRICS
        assert sum(counts) <= MAX_ENTITIES
    sent = {k: [e for b in bodies for e in b.get(k, [])] for k in ("params", "tags", "metrics")}
    assert [p["key"] for p in sent["params"]] == [k for k, _v in params]
    assert len(sent["params"][0]["value"]) == 6000 and len(sent["tags"][0]["value"]) == 8000
    assert len(sent["tags"]) == 150
    assert [m["step"] for m in sent["metrics"]] == list(range(2500))  # the long key is left out


def test_the_client_never_shows_credentials() -> None:
    client = MlflowClient("https://alice:pw-secret@mlflow.example.com/prefix/",
                          {"MLFLOW_TRACKING_TOKEN": "tok"})
    assert client.shown == "https://mlflow.example.com/prefix"
    assert client.run_url("3", "abc") == "https://mlflow.example.com/prefix/#/experiments/3/runs/abc"
    assert proxy_path("mlflow-artifacts:/3/abc/artifacts") == "3/abc/artifacts"
    assert proxy_path("s3://bucket/3/abc/artifacts") is None


def test_a_container_reaches_a_server_on_the_host(tmp_path: Path) -> None:
    variables = {"MLFLOW_TRACKING_URI": "http://localhost:5000", "MLFLOW_RUN_ID": "r"}
    host = {"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_SERVER_CERT_PATH": "/nonexistent/ca",
            "OTHER": "x"}
    got = for_container(variables, None, host)
    assert (got.network, got.extra_hosts, got.mounts) == ("host", (), ())
    assert got.env == {**variables, "MLFLOW_TRACKING_TOKEN": "t"}  # no such file: not passed
    got = for_container(variables, "bridge", host)
    assert got.network == "bridge" and got.extra_hosts == ("host.docker.internal:host-gateway",)
    assert got.env["MLFLOW_TRACKING_URI"] == "http://host.docker.internal:5000"
    remote = {"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}
    assert for_container(remote, None, {}) == ContainerTracking(remote, None)
    assert for_container(variables, "host", {}).network == "host"


def test_a_container_gets_the_tls_files_named_on_the_host_read_only(tmp_path: Path) -> None:
    ca, client = tmp_path / "corp ca.pem", tmp_path / "me.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    client.write_text("-----BEGIN CERTIFICATE-----\n")
    host = {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(ca),
            "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(client)}
    got = for_container({"MLFLOW_TRACKING_URI": "https://mlflow.corp"}, None, host)
    assert got.env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/run/reprun/mlflow/server-ca.pem"
    assert got.env["MLFLOW_TRACKING_CLIENT_CERT_PATH"] == "/run/reprun/mlflow/client-cert.pem"
    assert got.mounts == ((str(ca), "/run/reprun/mlflow/server-ca.pem"),
                          (str(client), "/run/reprun/mlflow/client-cert.pem"))
    request = RunRequest(
        run_id="r" * 32, command="true", workdir=tmp_path, env={**host, "PATH": "/usr/bin"},
        resolved_env=ResolvedEnv("local", Lock("local", "none.txt", ""), "k"),
        output_dir=tmp_path / "out", log_path=tmp_path / "log",
        tracking_env={"MLFLOW_TRACKING_URI": "https://mlflow.corp"})
    config = container_config(request, ContainerSpec(name="p", workdir="/w"), "img")
    assert {"Type": "bind", "Source": str(ca), "Target": "/run/reprun/mlflow/server-ca.pem",
            "ReadOnly": True} in config["HostConfig"]["Mounts"]
    assert "MLFLOW_TRACKING_CLIENT_CERT_PATH=/run/reprun/mlflow/client-cert.pem" in config["Env"]
    assert not any(str(tmp_path) in item for item in config["Env"])


def test_a_pod_gets_kube_mlflow_tracking_uri_and_credentials_never_saved() -> None:
    variables = {"MLFLOW_TRACKING_URI": "http://localhost:5000", "MLFLOW_RUN_ID": "r",
                 "MLFLOW_EXPERIMENT_ID": "2"}
    host = {"KUBE_MLFLOW_TRACKING_URI": "http://mlflow.ml.svc:5000",
            "MLFLOW_TRACKING_TOKEN": "tok-1", "MLFLOW_TRACKING_PASSWORD": "pw-1"}
    env, copies = for_pod(variables, host)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.ml.svc:5000"
    assert copies == ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
    config = KubernetesConfig(secret_env={"MLFLOW_TRACKING_PASSWORD": SecretRef(
        secret="mlflow", key="password")})
    inputs = JobInputs(run_id="0" * 32, project_name="p", entry_point="main", command="true",
                       image="img@sha256:" + "a" * 64, namespace="ml", env=env, host_env=host,
                       host_copies=copies)
    rendered = render_job(config, None, inputs)
    sent = {e["name"]: e for e in rendered.manifest["spec"]["template"]["spec"]["containers"][0]
            ["env"]}
    saved = {e["name"]: e for e in rendered.saved["spec"]["template"]["spec"]["containers"][0]
             ["env"]}
    assert sent["MLFLOW_TRACKING_TOKEN"]["value"] == "tok-1"
    assert saved["MLFLOW_TRACKING_TOKEN"]["value"] == COPIED_MARK
    assert "valueFrom" in sent["MLFLOW_TRACKING_PASSWORD"]  # the Secret wins
    assert saved["MLFLOW_RUN_ID"]["value"] == "r"


def test_a_run_without_tracking_imports_nothing_of_it(reprun: Reprun, echo: Path) -> None:
    assert reprun("run", str(echo), "--env-manager", "local", "-q").code == 0
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "run", str(echo), "--env-manager",
         "local", "-q"],
        env=reprun.env(), cwd=reprun.cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip()
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "runner" in imported
    assert not imported & {"urllib.request", "http.client", "ssl", "getpass",
                           "runner.tracking.mlflow.settings", "runner.tracking.mlflow.client",
                           "runner.tracking.mlflow.sink"}, imported
