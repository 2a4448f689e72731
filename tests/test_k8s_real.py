"""Layer 3: the same scenarios against a real cluster, when REPRUN_TEST_KUBECONFIG names one.

Needs a Kubernetes 1.24+ cluster whose nodes can pull REPRUN_TEST_IMAGE (default
``busybox:1.36``; any image with /bin/sh, echo, tr, seq, sleep, tar, gzip and base64 works). Each
test makes its own namespace and deletes it at the end. Skipped when REPRUN_TEST_KUBECONFIG is not
set.

A cluster that needs pod settings (``host_network: true`` without a pod network, tolerations, a
Job template...) gets them from REPRUN_TEST_BACKEND_CONFIG: a JSON or YAML backend config, or
the path of one, merged into the config of every test (the test's own keys win).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MakeProject, Reprun
from k8s_checks import assert_outputs_came_back

KUBECONFIG = os.environ.get("REPRUN_TEST_KUBECONFIG")
IMAGE = os.environ.get("REPRUN_TEST_IMAGE", "busybox:1.36")
pytestmark = [
    pytest.mark.k8s_real,
    pytest.mark.skipif(not KUBECONFIG, reason="REPRUN_TEST_KUBECONFIG is not set"),
]
MLPROJECT = """
name: reprun-real
entry_points:
  main:
    command: "echo hello {who} && echo second line | tr a-z A-Z"
    parameters: {who: {default: world}}
  fail: {command: "echo failing; exit 3"}
  sleep: {command: "echo sleeping; sleep 300"}
  secret: {command: "echo token=$API_TOKEN"}
  outputs:
    command: >-
      seq 1 5 > $REPRUN_OUTPUT_DIR/n.txt && mkdir $REPRUN_OUTPUT_DIR/d &&
      echo x > $REPRUN_OUTPUT_DIR/d/x && echo wrote
"""


def extra_config() -> dict[str, Any]:
    """REPRUN_TEST_BACKEND_CONFIG: inline JSON/YAML or a file; relative template paths in a
    file are made absolute (the merged config is given inline)."""
    text = os.environ.get("REPRUN_TEST_BACKEND_CONFIG", "").strip()
    if not text:
        return {}
    path = Path(text)
    base = Path.cwd()
    if not text.startswith("{") and path.is_file():
        base = path.resolve().parent
        text = path.read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict), "REPRUN_TEST_BACKEND_CONFIG must be a mapping"
    template = data.get("kube-job-template-path")
    if template:
        data["kube-job-template-path"] = str((base / template).resolve())
    return data


def backend_config(ns: str, **cfg: Any) -> str:
    return json.dumps({**extra_config(), "image": IMAGE, "namespace": ns, "poll_seconds": 1,
                       **cfg})


@pytest.fixture
def namespace() -> Iterator[tuple[str, Any]]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=KUBECONFIG)
    core = client.CoreV1Api(api)
    name = f"reprun-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name, core
    finally:
        core.delete_namespace(name, propagation_policy="Foreground")


def run(reprun: Reprun, project: Path, ns: str, *args: str, **cfg: Any) -> Any:
    return reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                  backend_config(ns, **cfg), *args, env={"KUBECONFIG": str(KUBECONFIG)},
                  timeout=600)


def pods(core: Any, ns: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns).items)


def test_real_success_with_logs(reprun: Reprun, make_project: MakeProject,
                                namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = run(reprun, make_project(MLPROJECT), ns, "-P", "who=a b; c")
    assert result.code == 0, result.stderr
    assert "hello a b; c\nSECOND LINE\n" in result.stdout
    facts = reprun.last_record()["backend"]["facts"]
    assert facts["job_uid"] and facts["node_name"] and facts["image_digest"]


def test_real_failure_exit_code(reprun: Reprun, make_project: MakeProject,
                                namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = run(reprun, make_project(MLPROJECT), ns, "-e", "fail")
    assert result.code == 3
    assert "BackoffLimitExceeded" in reprun.last_record()["reason"]


def test_real_deadline(reprun: Reprun, make_project: MakeProject,
                       namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = run(reprun, make_project(MLPROJECT), ns, "-e", "sleep", active_deadline_seconds=5)
    assert result.code == 1
    assert reprun.last_record()["reason"].startswith("DeadlineExceeded")


def test_real_secret_env(reprun: Reprun, make_project: MakeProject,
                         namespace: tuple[str, Any]) -> None:
    ns, core = namespace
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"},
                                       "stringData": {"token": "s3cr3t"}})
    result = run(reprun, make_project(MLPROJECT), ns, "-e", "secret",
                 secret_env={"API_TOKEN": {"secret": "creds", "key": "token"}})
    assert result.code == 0, result.stderr
    assert "token=s3cr3t" in result.stdout


def test_real_ctrl_c_leaves_no_pod(reprun: Reprun, make_project: MakeProject,
                                   namespace: tuple[str, Any]) -> None:
    ns, core = namespace
    proc = reprun.popen("run", str(make_project(MLPROJECT)), "-e", "sleep", "--backend",
                        "kubernetes", "--backend-config", backend_config(ns),
                        env={"KUBECONFIG": str(KUBECONFIG)})
    deadline = time.monotonic() + 300
    while not any(p.status.phase == "Running" for p in pods(core, ns)):
        assert time.monotonic() < deadline, "no pod started"
        time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert pods(core, ns) == []
    assert reprun.last_record()["status"] == "KILLED"


def test_real_detach_then_complete(reprun: Reprun, make_project: MakeProject,
                                   namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    assert run(reprun, make_project(MLPROJECT), ns, "--detach").code == 0
    run_id = reprun.last_record()["run_id"]
    deadline = time.monotonic() + 300
    while True:
        shown = reprun("runs", "show", run_id, "--json", env={"KUBECONFIG": str(KUBECONFIG)})
        if shown.json()["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, "the detached run did not end"
        time.sleep(2)
    assert shown.json()["status"] == "FINISHED"
    assert "SECOND LINE" in reprun("runs", "logs", run_id).stdout


def test_real_outputs_come_back(reprun: Reprun, make_project: MakeProject,
                                namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = run(reprun, make_project(MLPROJECT), ns, "-e", "outputs")
    assert result.code == 0, result.stderr
    assert result.stdout == "wrote\n"
    assert_outputs_came_back(reprun.last_record(),
                             {"n.txt": b"1\n2\n3\n4\n5\n", "d/x": b"x\n"})


def test_real_reproduce_check(reprun: Reprun, make_project: MakeProject,
                              namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    assert run(reprun, make_project(MLPROJECT), ns, "-e", "outputs").code == 0
    run_id = reprun.last_record()["run_id"]
    again = reprun("reproduce", run_id, "--check", env={"KUBECONFIG": str(KUBECONFIG)},
                   timeout=600)
    assert again.code == 0, again.stderr
    assert "outputs identical: 2 file(s)" in again.stderr


def test_real_missing_service_account_ends_with_the_event(
        reprun: Reprun, make_project: MakeProject, namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = run(reprun, make_project(MLPROJECT), ns, service_account="nobody",
                 start_timeout_seconds=20)
    assert result.code == 1
    assert "FailedCreate" in result.stderr
    reason = reprun.last_record()["reason"]
    assert 'serviceaccount "nobody" not found' in reason and "start_timeout_seconds" in reason


def test_real_ttl_zero(reprun: Reprun, make_project: MakeProject,
                       namespace: tuple[str, Any]) -> None:
    ns, core = namespace
    project = make_project(MLPROJECT)
    for _ in range(3):
        result = run(reprun, project, ns, "-e", "outputs", ttl_seconds_after_finished=0)
        assert result.code == 0, result.stderr
        record = reprun.last_record()
        assert record["status"] == "FINISHED" and len(record["outputs"]) == 2
    deadline = time.monotonic() + 120
    while pods(core, ns):  # the finalizer was removed: the TTL takes the pods
        assert time.monotonic() < deadline, "pods were left behind"
        time.sleep(1)


SWEEP_PROJECT = """
name: reprun-real-sweep
entry_points:
  main:
    parameters: {k: {type: int, default: 0}, pause: {type: int, default: 0}}
    command: "sleep {pause}; echo score: {k}"
    metrics: {stdout: true}
"""


def _sweep_file(reprun: Reprun) -> dict[str, Any]:
    (directory,) = (reprun.home / "sweeps").iterdir()
    data: dict[str, Any] = json.loads((directory / "sweep.json").read_text())
    return data


def test_real_sweep_one_job_per_trial(reprun: Reprun, make_project: MakeProject,
                                      namespace: tuple[str, Any]) -> None:
    ns, _ = namespace
    result = reprun("sweep", str(make_project(SWEEP_PROJECT)), "-P", "k=1..3", "--parallel",
                    "2", "--metric", "score:max", "--backend", "kubernetes",
                    "--backend-config", backend_config(ns), env={"KUBECONFIG": str(KUBECONFIG)},
                    timeout=900)
    assert result.code == 0, result.stderr
    saved = _sweep_file(reprun)
    assert [t["value"] for t in saved["trials"]] == [1.0, 2.0, 3.0]
    jobs = {reprun.record(t["run_id"])["backend"]["facts"]["job_uid"] for t in saved["trials"]}
    assert len(jobs) == 3


def test_real_sweep_ctrl_c_leaves_no_pod(reprun: Reprun, make_project: MakeProject,
                                         namespace: tuple[str, Any]) -> None:
    ns, core = namespace
    proc = reprun.popen("sweep", str(make_project(SWEEP_PROJECT)), "-P", "k=1..3",
                        "-P", "pause=300", "--parallel", "2", "--backend", "kubernetes",
                        "--backend-config", backend_config(ns),
                        env={"KUBECONFIG": str(KUBECONFIG)})
    deadline = time.monotonic() + 300
    while sum(1 for p in pods(core, ns) if p.status.phase == "Running") < 2:
        assert time.monotonic() < deadline, "the trials' pods did not start"
        time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert pods(core, ns) == []
    assert [t["status"] for t in _sweep_file(reprun)["trials"]] == ["KILLED", "KILLED", None]
