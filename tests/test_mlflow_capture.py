"""No tracking URI: reprun answers the project's MLflow client itself, and keeps what it logs.

The wire tests speak MLflow's REST API with urllib (as the client does: Bearer token, JSON
bodies, artifact PUTs); the client tests run the real MLflow 3.17.2 client
(``REPRUN_TEST_MLFLOW`` names its ``mlflow``; its virtualenv has scikit-learn too).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, init_repo

PROBE = """\
    import json, os, sys, urllib.error, urllib.request
    uri, token = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_TRACKING_TOKEN"]
    run, exp = os.environ["MLFLOW_RUN_ID"], os.environ["MLFLOW_EXPERIMENT_ID"]
    answers = {}
    def call(name, method, path, body=None, auth=True, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer " + token
        request = urllib.request.Request(uri + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers[name] = [response.status, json.loads(response.read() or b"{}")]
        except urllib.error.HTTPError as error:
            answers[name] = [error.code, json.loads(error.read())]
    api = "/api/2.0/mlflow/"
    call("no_token", "GET", api + "runs/get?run_id=" + run, auth=False)
    call("unknown", "POST", api + "runs/frobnicate", {"run_id": run})
    call("param", "POST", api + "runs/log-parameter", {"run_id": run, "key": "alpha",
                                                       "value": "0.9"})
    call("param_again", "POST", api + "runs/log-parameter", {"run_id": run, "key": "alpha",
                                                             "value": "0.1"})
    call("bad_key", "POST", api + "runs/log-metric", {"run_id": run, "key": "../up",
                                                      "value": 1.0, "timestamp": 1, "step": 0})
    call("metric", "POST", api + "runs/log-batch", {"run_id": run, "metrics": [
        {"key": "loss", "value": v, "timestamp": 1000 + s, "step": s}
        for s, v in enumerate([0.5, 0.25])]})
    call("tag", "POST", api + "runs/set-tag", {"run_id": run, "key": "mlflow.runName",
                                               "value": "probe"})
    art = "/api/2.0/mlflow-artifacts/artifacts/%s/%s/artifacts/" % (exp, run)
    call("put", "PUT", art + "sub/notes.txt", raw=b"some notes")
    call("escape", "PUT", art + "sub/../../../escape.txt", raw=b"x")
    call("get", "GET", api + "runs/get?run_id=" + run)
    print(json.dumps(answers))
    out = os.environ["REPRUN_OUTPUT_DIR"]
    with open(os.path.join(out, "..", "endpoint.json"), "w") as f:
        json.dump({"uri": uri, "token": token, "run": run}, f)
"""
UNKNOWN = "POST /api/2.0/mlflow/runs/frobnicate"
PROBE_PROJECT = """\
    name: probe
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
        command: "$PROBE_PY probe.py"
"""


def _probe(reprun: Reprun, make_project: MakeProject, **env: str) -> tuple[Any, dict[str, Any]]:
    project = make_project(PROBE_PROJECT, files={"probe.py": PROBE}, name="probe")
    result = reprun("run", str(project), "--env-manager", "local",
                    env={"PROBE_PY": sys.executable, **env})
    return result, reprun.last_record()


def test_the_wire_answers_refusals_and_the_record(reprun: Reprun,
                                                  make_project: MakeProject) -> None:
    result, record = _probe(reprun, make_project)
    assert result.code == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["no_token"][0] == 401
    assert answers["no_token"][1]["error_code"] == "UNAUTHENTICATED"
    # A call reprun does not answer is a loud 404 naming it, never a silent 200.
    assert answers["unknown"] == [404, {
        "error_code": "ENDPOINT_NOT_FOUND",
        "message": f"reprun's MLflow endpoint does not answer {UNKNOWN}"}]
    assert (f"warning: mlflow: the project called {UNKNOWN}, which reprun's MLflow "
            "endpoint does not answer") in result.stderr
    assert answers["param"] == [200, {}]
    assert answers["param_again"][0] == 400
    assert answers["param_again"][1]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in answers["param_again"][1]["message"]
    assert answers["bad_key"][0] == 400
    assert answers["bad_key"][1]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answers["put"][0] == 200
    assert answers["escape"][0] == 400
    info = answers["get"][1]["run"]["info"]
    assert info["run_id"] == record["run_id"] and info["run_name"] == "probe"
    assert info["artifact_uri"] == f"mlflow-artifacts:/0/{record['run_id']}/artifacts"
    captured = record["captured"]
    assert captured["params"] == {"alpha": "0.9"}
    assert captured["conflicts"] == [{"name": "alpha", "declared": "0.5", "logged": "0.9"}]
    assert "warning: mlflow: the project logged alpha='0.9', but the run was given " \
           "alpha='0.5'" in result.stderr
    assert record["parameters"] == {"alpha": "0.5"}
    shown = reprun("runs", "show", record["run_id"][:8]).stdout
    assert "conflicts:   alpha given 0.5, logged 0.9" in shown
    assert f"unanswered:  {UNKNOWN}" in shown
    assert captured["run_name"] == "probe"
    assert captured["unanswered"] == [UNKNOWN]
    assert len(captured["refused"]) == 3
    assert record["metrics"]["loss"] == {"last": 0.25, "step": 1, "min": 0.25, "max": 0.5,
                                         "count": 2, "better": None}
    run_dir = Path(reprun.home) / "runs" / record["run_id"]
    history = [json.loads(x) for x in (run_dir / captured["history_file"]).read_text()
               .splitlines()]
    assert [(p["value"], p["step"], p["timestamp"]) for p in history] == [
        (0.5, 0, 1000), (0.25, 1, 1001)]
    outputs = {o["path"]: o for o in record["outputs"]}
    assert outputs["mlflow/artifacts/sub/notes.txt"]["size"] == 10
    assert outputs["mlflow/artifacts/sub/notes.txt"]["digest"].startswith("blake3:")
    assert not list(run_dir.rglob("escape.txt"))
    # The endpoint died with the run: logging later finds nothing listening.
    endpoint = json.loads((run_dir / "endpoint.json").read_text())
    assert endpoint["uri"].startswith("http://127.0.0.1:")  # the loopback only
    request = urllib.request.Request(
        endpoint["uri"] + "/api/2.0/mlflow/runs/log-parameter", method="POST",
        data=json.dumps({"run_id": endpoint["run"], "key": "late", "value": "1"}).encode(),
        headers={"Authorization": f"Bearer {endpoint['token']}"})
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(request, timeout=10)
    # The token never reaches the record.
    assert endpoint["token"] not in (run_dir / "run.json").read_text()


def test_capture_off_leaves_the_project_alone(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(PROBE_PROJECT.replace("$PROBE_PY probe.py", "env"), name="off")
    result = reprun("run", str(project), "--env-manager", "local",
                    env={"REPRUN_MLFLOW_CAPTURE": "off"})
    assert result.code == 0, result.stderr
    assert "MLFLOW_TRACKING_URI" not in result.stdout
    assert reprun.last_record()["captured"] is None


def _mlflow_python() -> Path:
    mlflow = os.environ.get("REPRUN_TEST_MLFLOW")
    python = Path(mlflow).parent / "python" if mlflow else None
    if python is None or not os.access(python, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail("REPRUN_TEST_MLFLOW does not name the mlflow of a virtualenv")
        pytest.skip("REPRUN_TEST_MLFLOW does not name the mlflow of a virtualenv")
    return python


TRAIN = """\
    import os, pathlib, sys
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", sys.argv[1])
        mlflow.log_params({"layers": 2, "kind": "linear"})
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("rmse", value, step=step)
        mlflow.log_metrics({"r2": 0.75, "odd": float("nan")})
        mlflow.set_tag("stage", "test")
        pathlib.Path("notes.txt").write_text("hello")
        mlflow.log_artifact("notes.txt")
        os.makedirs("plots/sub", exist_ok=True)
        pathlib.Path("plots/a.txt").write_text("a")
        pathlib.Path("plots/sub/b.txt").write_text("b")
        mlflow.log_artifacts("plots", artifact_path="plots")
        X, y = np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 3.0])
        model = LinearRegression().fit(X, y)
        mlflow.sklearn.log_model(model, name="regressor",
                                 signature=infer_signature(X, model.predict(X)))
        with mlflow.start_run(nested=True, run_name="fold-1"):
            mlflow.log_param("fold", "1")
            mlflow.log_metric("loss", 0.125)
            mlflow.log_text("child", "child.txt")
        try:
            mlflow.log_metric("no good!", 1.0)
        except mlflow.exceptions.MlflowException as exc:
            print("refused:", exc.error_code)
"""
TRAIN_PROJECT = """\
    name: captured
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
        command: "$MLFLOW_PY train.py {alpha}"
"""


@pytest.mark.slow
def test_the_real_client_logs_into_the_run(reprun: Reprun, make_project: MakeProject) -> None:
    python = _mlflow_python()
    project = make_project(TRAIN_PROJECT, files={"train.py": TRAIN}, name="captured")
    result = reprun("run", str(project), "--env-manager", "local", "-P", "alpha=0.3",
                    env={"MLFLOW_PY": str(python)}, timeout=600)
    assert result.code == 0, result.stderr
    assert "refused: INVALID_PARAMETER_VALUE" in result.stdout
    record = reprun.last_record()
    captured = record["captured"]
    assert captured["status"] == "FINISHED"
    assert captured["params"] == {"alpha": "0.3", "layers": "2", "kind": "linear"}
    assert captured["conflicts"] == [] and captured["unanswered"] == []
    assert captured["tags"] == {"stage": "test"}
    assert record["metrics"]["rmse"] == {"last": 0.25, "step": 2, "min": 0.25, "max": 0.9,
                                         "count": 3, "better": None}
    assert record["metrics"]["r2"]["count"] == 1  # the model's copy of it is no new point
    assert "odd" not in record["metrics"]  # NaN is kept in the history, not summarised
    assert "warning: metrics: mlflow: metric 'odd' is nan, ignored" in result.stderr
    paths = {o["path"] for o in record["outputs"]}
    assert {"mlflow/artifacts/notes.txt", "mlflow/artifacts/plots/a.txt",
            "mlflow/artifacts/plots/sub/b.txt", "mlflow/models/regressor/MLmodel",
            "mlflow/models/regressor/model.skops"} <= paths
    [model] = captured["models"]
    assert model["name"] == "regressor" and model["path"] == "mlflow/models/regressor"
    assert model["model_id"].startswith("m-") and model["run_id"] == record["run_id"]
    assert model["status"] == "LOGGED_MODEL_READY"
    assert {"sklearn", "python_function"} <= set(model["flavors"])
    assert "float64" in model["signature"]["inputs"]
    assert model["artifact_path"].endswith(f"/models/{model['model_id']}/artifacts")
    [child] = captured["children"]
    assert child["run_name"] == "fold-1" and child["parent_run_id"] == record["run_id"]
    assert child["params"] == {"fold": "1"} and child["metrics"] == {"loss": 0.125}
    assert f"{child['artifacts']}/child.txt" in paths
    assert "loss" not in record["metrics"]  # a nested run's metrics are its own
    shown = reprun("runs", "show", record["run_id"][:8]).stdout
    assert "model:       regressor (python_function, sklearn) in mlflow/models/regressor" in shown
    assert "1 nested run(s)" in shown


SWEPT = """\
    import sys
    import mlflow
    alpha = float(sys.argv[1])
    mlflow.log_param("alpha", sys.argv[1])  # no start_run: the first call joins reprun's run
    for step in range(3):
        mlflow.log_metric("rmse", (alpha - 0.3) ** 2 + 1.0 / (step + 1), step=step)
"""


@pytest.mark.slow
def test_a_parallel_sweep_from_a_file_url_ranks_every_trial(
        reprun: Reprun, make_project: MakeProject) -> None:
    python = _mlflow_python()
    project = make_project(TRAIN_PROJECT, files={"train.py": SWEPT}, name="swept")
    init_repo(project)
    result = reprun("sweep", f"file://{project}", "-P", "alpha=0.1,0.3,0.5", "--parallel", "2",
                    "--metric", "metrics.rmse:min", "--env-manager", "local",
                    env={"MLFLOW_PY": str(python)}, timeout=900)
    assert result.code == 0, result.stderr
    sweep_id = next(line.split("sweep ", 1)[1].split()[0] for line in result.stderr.splitlines()
                    if line.startswith("reprun: sweep "))
    rows = reprun("sweep", "show", sweep_id[:6], "--csv").stdout.splitlines()
    assert rows[0].startswith("rank,trial,status,rmse")
    ranked = [row.split(",") for row in rows[1:]]
    assert [r[:3] for r in ranked] == [["1", "1", "FINISHED"], ["2", "0", "FINISHED"],
                                       ["3", "2", "FINISHED"]]
    assert float(ranked[0][3]) == pytest.approx(1.0 / 3)
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()


DOCKER_PROBE = """\
    import json, os, urllib.request
    uri, run = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_RUN_ID"]
    headers = {"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"],
               "Content-Type": "application/json"}
    def post(path, body):
        request = urllib.request.Request(uri + "/api/2.0/mlflow/" + path, method="POST",
                                         data=json.dumps(body).encode(), headers=headers)
        urllib.request.urlopen(request, timeout=60).read()
    post("runs/log-metric", {"run_id": run, "key": "from_container", "value": 1.5,
                             "timestamp": 1, "step": 0})
    post("runs/log-parameter", {"run_id": run, "key": "where", "value": "docker"})
    exp = os.environ["MLFLOW_EXPERIMENT_ID"]
    put = urllib.request.Request(
        "%s/api/2.0/mlflow-artifacts/artifacts/%s/%s/artifacts/weights.bin" % (uri, exp, run),
        method="PUT", data=b"w" * 1000, headers=headers)
    urllib.request.urlopen(put, timeout=60).read()
"""


@pytest.mark.docker
def test_a_docker_run_logs_into_the_run(reprun: Reprun, make_project: MakeProject,
                                        base_image: str, image_repo: str) -> None:
    project = make_project(f"name: {image_repo}\nentry_points:\n  main:\n"
                           "    command: python log.py\n",
                           files={"log.py": DOCKER_PROBE}, name=image_repo)
    result = reprun("run", str(project), "--backend", "docker", "--docker-base-image",
                    base_image, timeout=900)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    docker = record["backend"]["docker"]
    assert docker["network"] == "host"  # the endpoint listens on the loopback only
    assert {"MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"} <= set(
        docker["env_names"])
    assert record["metrics"]["from_container"]["last"] == 1.5
    assert record["captured"]["params"] == {"where": "docker"}
    outputs = {o["path"]: o["size"] for o in record["outputs"]}
    assert outputs["mlflow/artifacts/weights.bin"] == 1000


WRITES_MLFLOW_FILES = """\
    import pathlib, sqlite3
    sqlite3.connect("mlflow.db").execute("create table if not exists runs (id text)")
    meta = pathlib.Path("mlruns/0/meta.yaml")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text("name: Default\\n")
    pathlib.Path("mlartifacts/0").mkdir(parents=True, exist_ok=True)
    pathlib.Path("mlartifacts/0/model.pkl").write_bytes(b"weights")
"""


def test_mlflow_files_written_in_place_are_no_change_to_the_code(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("name: inplace\nentry_points:\n  main:\n"
                           "    command: $PROBE_PY write.py\n",
                           files={"write.py": WRITES_MLFLOW_FILES}, name="inplace")
    commit = init_repo(project)
    for _ in range(2):
        result = reprun("run", str(project), "--env-manager", "local",
                        env={"PROBE_PY": sys.executable, "REPRUN_MLFLOW_CAPTURE": "off"})
        assert result.code == 0, result.stderr
    source = reprun.last_record()["source"]
    assert source["resolved_commit"] == commit
    assert source["git_dirty"] is False and source["patch_file"] is None
    assert source["left_out"] == ["mlartifacts/0/model.pkl", "mlflow.db", "mlruns/0/meta.yaml"]
    (project / "write.py").write_text(WRITES_MLFLOW_FILES + "# changed\n")
    reprun("run", str(project), "--env-manager", "local",
           env={"PROBE_PY": sys.executable, "REPRUN_MLFLOW_CAPTURE": "off"})
    assert reprun.last_record()["source"]["git_dirty"] is True  # a real change still counts


@pytest.mark.docker
def test_a_container_on_its_own_network_gets_no_endpoint(
        reprun: Reprun, make_project: MakeProject, base_image: str) -> None:
    project = make_project(f"name: isolated\ndocker_env:\n  image: {base_image}\n"
                           "  network: none\nentry_points:\n  main:\n    command: env\n",
                           name="isolated")
    result = reprun("run", str(project), "--backend", "docker", timeout=600)
    assert result.code == 0, result.stderr
    assert "MLFLOW_" not in result.stdout  # the loopback endpoint is out of its reach
    record = reprun.last_record()
    assert record["backend"]["docker"]["network"] == "none"
    assert record["captured"] is None


PUSHED = """\
    import json, os, urllib.request
    uri, run = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_RUN_ID"]
    headers = {"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"],
               "Content-Type": "application/json"}
    def send(method, path, data):
        request = urllib.request.Request(uri + path, method=method, data=data, headers=headers)
        urllib.request.urlopen(request, timeout=60).read()
    send("POST", "/api/2.0/mlflow/runs/log-batch", json.dumps({
        "run_id": run, "params": [{"key": "layers", "value": "3"}],
        "tags": [{"key": "stage", "value": "dev"}],
        "metrics": [{"key": "loss", "value": v, "timestamp": 5, "step": s}
                    for s, v in enumerate([0.5, 0.25])]}).encode())
    send("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/%s/artifacts/plots/a.txt" % run, b"plot")
"""


@pytest.mark.slow
def test_runs_push_sends_what_was_captured(reprun: Reprun, make_project: MakeProject,
                                           tmp_path: Path) -> None:
    from mlflowserver import running_server

    project = make_project(PROBE_PROJECT.replace("probe.py", "pushed.py"),
                           files={"pushed.py": PUSHED}, name="pushed")
    result = reprun("run", str(project), "--env-manager", "local",
                    env={"PROBE_PY": sys.executable})
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    (tmp_path / "server").mkdir()
    with running_server(tmp_path / "server") as server:
        pushed = reprun("runs", "push", record["run_id"][:8], "--tracking-uri", server.url,
                        env={"MLFLOW_HTTP_REQUEST_TIMEOUT": "120"})  # a fresh server, loaded
        assert pushed.code == 0, pushed.stderr
        run_id = reprun.record(record["run_id"])["mlflow"]["run_id"]
        assert server.params(run_id) == {"alpha": "0.5", "layers": "3"}
        assert server.tags(run_id)["stage"] == "dev"
        assert server.metrics(run_id) == {"loss": 0.25}
        assert "plots/a.txt" in server.artifacts(run_id)


OWN_DIRECTORY = """\
    import json, os, pathlib, sys, time
    x, shared = sys.argv[1], pathlib.Path(os.environ["SHARED"])
    pathlib.Path("state.txt").write_text(x)            # the same name in every trial
    (shared / ("started-" + x)).write_text("")
    deadline = time.monotonic() + 60                   # both trials have written it
    while len(list(shared.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = pathlib.Path("state.txt").read_text()
    out = pathlib.Path(os.environ["REPRUN_OUTPUT_DIR"]) / "metrics.json"
    out.write_text(json.dumps({"seen": float(seen), "x": float(x)}))
"""


def test_parallel_trials_of_a_local_directory_each_have_their_own_copy(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project("name: own\nentry_points:\n  main:\n    parameters:\n"
                           "      x: {type: float}\n    command: $PROBE_PY own.py {x}\n",
                           files={"own.py": OWN_DIRECTORY}, name="own")
    shared = tmp_path / "shared"
    shared.mkdir()
    result = reprun("sweep", str(project), "-P", "x=1,2", "--parallel", "2",
                    "--env-manager", "local",
                    env={"PROBE_PY": sys.executable, "SHARED": str(shared)})
    assert result.code == 0, result.stderr
    runs = reprun("runs", "list", "--json").json()
    assert len(runs) == 2
    records = [reprun.record(row["run_id"]) for row in runs]
    seen = sorted((r["metrics"]["x"]["last"], r["metrics"]["seen"]["last"]) for r in records)
    assert seen == [(1.0, 1.0), (2.0, 2.0)]  # each read back what it wrote itself
    assert [r["source"]["working_copy"] for r in records] == [True, True]
    assert {r["project"]["path"] for r in records} == {str(project)}
    assert not (project / "state.txt").exists()
    assert not list((reprun.home / "sweeps").rglob("state.txt"))  # the copies are removed
