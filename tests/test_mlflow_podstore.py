"""A pod's MLflow logging (no tracking URI): the real MLflow 3.17.2 client logs into a file store
in the pod's output directory, which comes back with the outputs and is read into the record
(``runner.tracking.mlflow.endpoint.podstore``), attached or detached, through the fake API
server of tests/fakekube.py (its kubelet runs the pod's command as a host process)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import MakeProject, Reprun, Result
from fakekube import FakeKube
from test_mlflow_capture import _mlflow_python

from runner.tracking.mlflow.endpoint.podstore import STORE_DIR, StoreReader, pod_env
from runner.tracking.mlflow.endpoint.state import State

IMAGE = "127.0.0.1:9/reprun/app@sha256:" + "0f" * 32

LOG = """\
import mlflow, mlflow.pyfunc, os
class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input
with mlflow.start_run(run_name="pod-run"):
    mlflow.log_param("alpha", "0.5")
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.set_tag("team", "vision")
    with open("notes.txt", "w") as handle:
        handle.write("hello")
    mlflow.log_artifact("notes.txt")
    mlflow.pyfunc.log_model(name="model", python_model=Echo())
    with mlflow.start_run(nested=True, run_name="child"):
        mlflow.log_metric("inner", 2.0)
"""

HOSTILE = """\
import os
out = os.environ["REPRUN_OUTPUT_DIR"]
run = os.path.join(out, ".mlflow-store", "0", "a" * 32)
for sub in ("params", "metrics", "tags", "artifacts"):
    os.makedirs(os.path.join(run, sub))
with open(os.path.join(run, "meta.yaml"), "w") as f:
    f.write("run_id: x\\nexperiment_id: '0'\\nstatus: 3\\nstart_time: 1\\n")
with open(os.path.join(run, "params", "ok"), "w") as f:
    f.write("1")
os.symlink("../meta.yaml", os.path.join(run, "params", "linked"))
os.symlink("../../meta.yaml", os.path.join(run, "artifacts", "escape"))
with open(os.path.join(run, "metrics", "huge"), "w") as f:
    f.write("1 1.0 0\\n" * 2_300_000)
with open(os.path.join(run, "metrics", "loss"), "w") as f:
    f.write("1000 0.5 0\\nnot a point\\n1001 0.25 1\\n")
with open(os.path.join(out, ".mlflow-store", "0", "meta.yaml"), "w") as f:
    f.write(": : [unclosed")
"""


def _project(make_project: MakeProject, script: str, python: str) -> Path:
    project = make_project(f'name: pod\nentry_points:\n  main:\n    command: "{python} log.py"\n')
    (project / "log.py").write_text(script)
    return project


def _run(reprun: Reprun, fake: FakeKube, project: Path, *args: str) -> Result:
    cfg = json.dumps({"image": IMAGE, "poll_seconds": 0.3, "working_dir": str(project),
                      "outputs_max_bytes": 8 << 20})
    return reprun("run", str(project), "--backend", "kubernetes", "--backend-config", cfg,
                  *args, env={"KUBECONFIG": str(fake.kubeconfig_path)}, timeout=240)


def _check_captured(reprun: Reprun, record: dict[str, Any]) -> None:
    captured = record["captured"]
    assert captured["params"] == {"alpha": "0.5"}
    assert captured["tags"]["team"] == "vision"
    assert captured["run_name"] == "pod-run" and captured["status"] == "FINISHED"
    assert captured["metric_points"] == 4
    assert [c["run_name"] for c in captured["children"]] == ["child"]
    assert captured["children"][0]["parent_run_id"] == record["run_id"]
    assert captured["children"][0]["metrics"] == {"inner": 2.0}
    [model] = captured["models"]
    assert model["name"] == "model" and "python_function" in model["flavors"]
    assert model["path"] == "mlflow/models/model"
    assert record["metrics"]["loss"]["last"] == 1.0 / 3
    output = Path(record["output_dir"])
    assert (output / "mlflow" / "artifacts" / "notes.txt").read_text() == "hello"
    assert (output / "mlflow" / "models" / "model" / "MLmodel").is_file()
    assert not (output / ".mlflow-store").exists()
    stream = reprun.home / "runs" / record["run_id"] / "metrics.jsonl"
    steps = [json.loads(line) for line in stream.read_text().splitlines()]
    loss = [p for p in steps if p["name"] == "loss"]
    assert [p["step"] for p in loss] == [0, 1, 2] and loss[0]["source"] == "mlflow"


def test_a_pods_mlflow_logging_lands_in_the_record(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = _project(make_project, LOG, str(_mlflow_python()))
    result = _run(reprun, fake_kube, project)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    assert record["backend"]["facts"]["mlflow_store"] == ".mlflow-store"
    _check_captured(reprun, record)


def test_a_detached_pods_logging_lands_in_the_record_when_shown(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = _project(make_project, LOG, str(_mlflow_python()))
    result = _run(reprun, fake_kube, project, "--detach")
    assert result.code == 0, result.stderr
    run_id = reprun.last_record()["run_id"]
    for _ in range(600):
        shown = reprun("runs", "show", run_id, "--json",
                       env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
        if shown.json()["status"] != "RUNNING":
            break
        time.sleep(0.3)
    record = reprun.record(run_id)
    assert record["status"] == "FINISHED"
    _check_captured(reprun, record)


def test_a_hostile_store_gives_warnings_not_a_traceback(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = _project(make_project, HOSTILE, "python3")
    result = _run(reprun, fake_kube, project)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "the pod's store" in line]
    [links] = [line for line in result.stderr.splitlines() if "links and special" in line]
    assert "params/linked" in links and "artifacts/escape" in links  # never unpacked
    assert any("metrics/huge is" in line and "over reprun's limit" in line for line in said)
    assert any("metrics/loss has 1 malformed line" in line for line in said), said
    assert any("0/meta.yaml is not YAML" in line for line in said), said
    record = reprun.last_record()
    captured = record["captured"]
    assert captured["params"] == {"ok": "1"} and captured["metric_points"] == 2
    output = Path(record["output_dir"])
    assert not (output / ".mlflow-store").exists()
    assert not (output / "mlflow" / "artifacts" / "escape").exists()


def _read(tmp_path: Path) -> tuple[State, list[str]]:
    said: list[str] = []
    state = State("r" * 32, tmp_path, tmp_path / "out", None, None)
    StoreReader(state, tmp_path / "out" / STORE_DIR, said.append).read()
    state.close()
    return state, said


def test_the_reader_reads_what_the_real_client_wrote(tmp_path: Path) -> None:
    (tmp_path / "log.py").write_text(LOG)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           **pod_env(str(tmp_path / "out"))}
    done = subprocess.run([str(_mlflow_python()), "log.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    state, said = _read(tmp_path)
    assert said == []
    main = state.runs["r" * 32]
    assert main.params == {"alpha": "0.5"} and main.tags["team"] == "vision"
    assert main.run_name == "pod-run" and main.status == "FINISHED"
    assert state.points == 4 and main.last["loss"][0] == 1.0 / 3 and main.last["loss"][2] == 2
    [model] = state.models.values()
    assert model.source_run_id == "r" * 32
    assert (model.folder / "MLmodel").is_file()
    assert "python_function:" in (model.folder / "MLmodel").read_text()
    assert (main.artifacts / "notes.txt").read_text() == "hello"
    [child] = [r for r in state.runs.values() if r.run_id != "r" * 32]
    assert child.tags["mlflow.parentRunId"] == "r" * 32 and child.run_name == "child"


def test_the_reader_removes_links_and_never_follows_them(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    run = tmp_path / "out" / STORE_DIR / "0" / ("b" * 32)
    for sub in ("params", "artifacts/sub", "metrics"):
        (run / sub).mkdir(parents=True)
    (run / "meta.yaml").write_text("status: 3\nstart_time: 1\n")
    (run / "params" / "linked").symlink_to(secret)
    (run / "metrics" / "linked").symlink_to(secret)
    (run / "artifacts" / "sub" / "escape").symlink_to(secret)
    (run / "artifacts" / "kept.txt").write_text("kept")
    state, said = _read(tmp_path)
    main = state.runs["r" * 32]
    assert main.params == {} and state.points == 0
    assert (main.artifacts / "kept.txt").is_file()
    assert not (main.artifacts / "sub" / "escape").is_symlink()
    assert secret.read_text() == "x"
    assert any("params/linked is not a regular file" in line for line in said), said
    assert any("metrics/linked is not a regular file" in line for line in said), said
    assert any("artifacts/sub/escape is a symlink" in line for line in said), said
