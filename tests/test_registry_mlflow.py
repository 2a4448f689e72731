"""Models made by the real MLflow client (sklearn, in MLflow's own environment), mirrored to the
real MLflow server's registry, and served by MLflow's own scoring server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import MakeProject, Reprun, init_repo
from mlflowserver import Server, free_port, running_server

TRAIN = """
import json, os, sys
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

x = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 4.0], [4.0, 3.0]])
y = x @ np.array([2.0, -1.0]) + 0.5
model = LinearRegression().fit(x, y)
out = os.environ["REPRUN_OUTPUT_DIR"]
mlflow.sklearn.save_model(model, os.path.join(out, "model"),
                          signature=infer_signature(x, model.predict(x)))
with open(os.path.join(out, "metrics.json"), "w") as handle:
    json.dump({"r2": float(model.score(x, y))}, handle)
"""
MLPROJECT = """
name: sk
entry_points:
  main:
    command: "python train.py"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def mlflow_env(server: Server) -> dict[str, str]:
    """``python`` is MLflow's own environment's (which has sklearn): --env-manager local runs
    the project there."""
    return {"PATH": f"{server.mlflow.parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def trained(reprun: Reprun, make_project: MakeProject, server: Server) -> str:
    project = make_project(MLPROJECT, files={"train.py": TRAIN})
    init_repo(project)
    result = reprun("run", str(project), "--env-manager", "local", "-q", "--tracking-uri",
                    server.url, env=mlflow_env(server), timeout=300)
    assert result.code == 0, result.stderr
    return str(reprun.last_record()["run_id"])


def test_registered_mirrored_and_served(reprun: Reprun, server: Server,
                                                        trained: str) -> None:
    result = reprun("models", "register", "sk-reg", trained, "--tracking-uri", server.url,
                    "--description", "linear")
    assert result.code == 0, result.stderr
    version = reprun("models", "show", "sk-reg:1", "--json").json()
    assert version["mlflow_model"]["flavors"] == ["python_function", "sklearn"]
    assert "tensor" in version["mlflow_model"]["signature"]["inputs"]
    assert version["metrics"]["r2"] == pytest.approx(1.0)
    assert version["mlflow"]["version"] == "1"
    mlflow_run = reprun.record(trained)["mlflow"]["run_id"]
    remote = server.api("GET", "model-versions/get", name="sk-reg", version="1")["model_version"]
    assert remote["run_id"] == mlflow_run and remote["description"] == "linear"
    assert remote["source"].endswith("/artifacts/reprun-models/sk-reg/v1")
    tags = {t["key"]: t["value"] for t in remote["tags"]}
    assert tags["reprun.digest"] == version["digest"] and tags["reprun.run_id"] == trained
    listed = server.api("GET", "artifacts/list", run_id=mlflow_run,
                        path="reprun-models/sk-reg/v1")
    assert "reprun-models/sk-reg/v1/MLmodel" in [f["path"] for f in listed["files"]]
    result = reprun("models", "alias", "sk-reg", "1", "champion", "--tracking-uri", server.url)
    assert result.code == 0, result.stderr
    got = server.api("GET", "registered-models/alias", name="sk-reg", alias="champion")
    assert got["model_version"]["version"] == "1"
    result = reprun("models", "alias", "sk-reg", "champion", "--delete", "--tracking-uri",
                    server.url)
    assert result.code == 0, result.stderr
    assert server.api("GET", "registered-models/get", name="sk-reg")[
        "registered_model"].get("aliases", []) == []
    served(reprun)


def test_an_untracked_run_gets_an_mlflow_run_of_its_own(reprun: Reprun, server: Server,
                                                        make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo w > "
                           "$REPRUN_OUTPUT_DIR/w.bin'\n", name="plain")
    result = reprun("run", str(project), "--env-manager", "local", "-q")
    assert result.code == 0, result.stderr
    run_id = reprun.last_record()["run_id"]
    result = reprun("models", "register", "plain-reg", f"{run_id}:w.bin", "--tracking-uri",
                    server.url)
    assert result.code == 0, result.stderr
    remote = server.api("GET", "model-versions/get", name="plain-reg",
                        version="1")["model_version"]
    tags = server.api("GET", "runs/get", run_id=remote["run_id"])["run"]["data"]["tags"]
    assert {"key": "reprun.run_id", "value": run_id} in tags
    assert remote["source"].endswith("/reprun-models/plain-reg/v1/w.bin")
    # A version registered without a server goes with its run on 'runs push'.
    assert reprun("models", "register", "pushed", f"{run_id}:w.bin").code == 0
    result = reprun("runs", "push", run_id[:8], "--tracking-uri", server.url)
    assert result.code == 0, result.stderr
    assert "pushed version 1: MLflow version 1" in result.stderr
    remote = server.api("GET", "model-versions/get", name="pushed", version="1")["model_version"]
    pushed_run = reprun.record(run_id)["mlflow"]["run_id"]
    assert remote["run_id"] == pushed_run
    assert reprun("models", "show", "pushed:1", "--json").json()["mlflow"]["version"] == "1"


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def served(reprun: Reprun) -> None:
    """The version served by MLflow's scoring server in the environment that trained it."""
    assert reprun("models", "alias", "sk-reg", "1", "prod").code == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "models", "serve", "sk-reg@prod",
                             "--port", str(port)], env=reprun.env(), cwd=reprun.cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the scoring server did not start"
                time.sleep(0.5)
        answer = _post(f"http://127.0.0.1:{port}/invocations",
                       {"inputs": [[1.0, 0.0], [0.0, 1.0]]})
        assert [round(v, 6) for v in answer["predictions"]] == [2.5, -0.5]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
