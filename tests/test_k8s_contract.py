"""Layer 2: the kubernetes backend, through the real CLI and the unmodified client, against the
fake API server of tests/fakekube.py (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MakeProject, Reprun, Result
from fakekube import FakeKube, Fault, PodScript

DIGEST = "sha256:" + "0f" * 32
# No registry listens on port 9: a lookup or a push would fail the run.
IMAGE = f"127.0.0.1:9/reprun/app@{DIGEST}"

MLPROJECT = """
name: Kube Demo
entry_points:
  main:
    parameters:
      name: {type: string, default: world}
    command: "echo hello {name} && echo second line | tr a-z A-Z"
  slow:
    command: "echo hello world && sleep 4 && echo second line | tr a-z A-Z"
  fail:
    command: "echo about to fail; exit 3"
  sleep:
    command: "echo sleeping; sleep 60"
  secret:
    command: "echo token=$API_TOKEN"
"""


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    return make_project(MLPROJECT)


def config(project: Path, **extra: Any) -> str:
    data = {"image": IMAGE, "poll_seconds": 0.3, "working_dir": str(project), **extra}
    return json.dumps(data)


def run(reprun: Reprun, fake: FakeKube, project: Path, *args: str, cfg: str | None = None,
        timeout: float = 120) -> Result:
    return reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                  cfg or config(project), *args, env={"KUBECONFIG": str(fake.kubeconfig_path)},
                  timeout=timeout)


def test_success_streams_logs_and_records_cluster_facts(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, "-P", "name=a b; c")
    assert result.code == 0, result.stderr
    assert "hello a b; c\nSECOND LINE\n" in result.stdout
    record = reprun.last_record()
    assert record["status"] == "FINISHED" and record["exit_code"] == 0
    facts = record["backend"]["facts"]
    created = fake_kube.created_jobs[0]
    assert facts["cluster_server"] == fake_kube.url
    assert facts["kube_context"] == "fake" and facts["namespace"] == "default"
    assert facts["job_name"] == created["metadata"]["name"]
    assert facts["job_uid"] == created["metadata"]["uid"]
    assert facts["image"] == IMAGE and facts["image_digest"] == DIGEST
    assert facts["image_source"] == "existing" and facts["image_pushed"] is False
    assert facts["node_name"] == "fake-node-1"
    phases = [p["phase"] for p in facts["pod_phases"]]
    assert phases[-1] == "Succeeded" and all(p["at"] for p in facts["pod_phases"])
    container = created["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[3:5] == ["reprun", record["command"]]
    assert command[5] == f"::reprun-outputs-{record['run_id']}::"
    assert container["image"] == IMAGE
    logs = reprun("runs", "logs", record["run_id"])
    assert logs.stdout == "hello a b; c\nSECOND LINE\n"
    saved = yaml.safe_load((reprun.home / "runs" / record["run_id"] / "job.yaml").read_text())
    assert saved["metadata"]["name"] == facts["job_name"]


def test_failure_passes_the_exit_code_through(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "fail")
    assert result.code == 3
    assert "about to fail" in result.stdout
    record = reprun.last_record()
    assert record["status"] == "FAILED" and record["exit_code"] == 3
    assert "exited with code 3" in record["reason"]
    assert "BackoffLimitExceeded" in record["reason"]


def test_oom_killed_is_the_reason(reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(oom=True)
    result = run(reprun, fake_kube, project)
    assert result.code == 137
    record = reprun.last_record()
    assert record["reason"].startswith("OOMKilled:")


def test_active_deadline_is_the_reason(reprun: Reprun, fake_kube: FakeKube,
                                       project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "sleep",
                 cfg=config(project, active_deadline_seconds=1))
    assert result.code == 1
    record = reprun.last_record()
    assert record["status"] == "FAILED"
    assert record["reason"].startswith("DeadlineExceeded")
    assert not fake_kube.pods


def test_image_pull_backoff_fails_and_cleans_up(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(image_pull_backoff=True)
    result = run(reprun, fake_kube, project)
    assert result.code == 1
    assert reprun.last_record()["reason"].startswith("ImagePullBackOff: Back-off pulling image")
    assert not fake_kube.jobs and not fake_kube.pods


def test_unschedulable_after_the_timeout(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(unschedulable=True)
    result = run(reprun, fake_kube, project,
                 cfg=config(project, unschedulable_timeout_seconds=1, resources={"gpu": 1}))
    assert result.code == 1
    reason = reprun.last_record()["reason"]
    assert reason.startswith("Unschedulable: 0/1 nodes are available")
    assert not fake_kube.jobs and not fake_kube.pods


def wait_for(predicate: Any, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def running_pod(fake: FakeKube) -> bool:
    with fake.lock:
        return any(p["status"].get("phase") == "Running" for p in fake.pods.values())


def test_ctrl_c_deletes_the_job_in_the_foreground(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    proc = reprun.popen("run", str(project), "-e", "sleep", "--backend", "kubernetes",
                        "--backend-config", config(project),
                        env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    wait_for(lambda: running_pod(fake_kube), "a running pod")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not fake_kube.jobs and not fake_kube.pods
    delete = [r for r in fake_kube.requests if r[0] == "DELETE"]
    assert delete, fake_kube.requests
    record = reprun.last_record()
    assert record["status"] == "KILLED"
    assert "the Job was deleted" in record["reason"]


def test_detach_then_runs_show_completes_the_record(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, "--detach")
    assert result.code == 0, result.stderr
    assert "submitted" in result.stderr
    record = reprun.last_record()
    run_id = record["run_id"]
    assert record["backend"]["facts"]["detached"] is True

    def finished() -> bool:
        shown = reprun("runs", "show", run_id, "--json",
                       env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
        return bool(shown.json()["status"] == "FINISHED")

    wait_for(finished, "the detached run to finish")
    record = reprun.record(run_id)
    assert record["exit_code"] == 0 and record["ended_at"]
    assert record["backend"]["facts"]["pod_phases"][-1]["phase"] == "Succeeded"
    logs = reprun("runs", "logs", run_id)
    assert logs.stdout == "hello world\nSECOND LINE\n"


def test_cancel_a_detached_run(reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    env = {"KUBECONFIG": str(fake_kube.kubeconfig_path)}
    assert run(reprun, fake_kube, project, "-e", "sleep", "--detach").code == 0
    run_id = reprun.last_record()["run_id"]
    wait_for(lambda: running_pod(fake_kube), "a running pod")
    result = reprun("cancel", run_id[:8], env=env)
    assert result.code == 0, result.stderr
    assert not fake_kube.jobs and not fake_kube.pods
    record = reprun.record(run_id)
    assert record["status"] == "KILLED"
    again = reprun("cancel", run_id, env=env)
    assert "already ended: KILLED" in again.stderr


def test_secret_env_by_reference(reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.add_secret("default", "creds", {"token": "t0ps3cret"})
    cfg = config(project, secret_env={"API_TOKEN": {"secret": "creds", "key": "token"}})
    result = run(reprun, fake_kube, project, "-e", "secret", cfg=cfg)
    assert result.code == 0, result.stderr
    assert "token=t0ps3cret" in result.stdout  # resolved in the "pod", by the cluster
    run_dir = reprun.home / "runs" / reprun.last_record()["run_id"]
    saved = (run_dir / "job.yaml").read_text()
    assert "secretKeyRef" in saved and "t0ps3cret" not in saved
    assert "t0ps3cret" not in (run_dir / "run.json").read_text()


def test_missing_secret_fails_with_the_kubelet_reason(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    cfg = config(project, secret_env={"API_TOKEN": {"secret": "nope", "key": "token"}})
    result = run(reprun, fake_kube, project, "-e", "secret", cfg=cfg)
    assert result.code == 1
    assert reprun.last_record()["reason"] == (
        'CreateContainerConfigError: secret "nope" not found')


def test_transient_errors_dropped_watches_and_logs_are_retried(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.faults = [Fault("POST", "/jobs", 503, count=2),
                        Fault("POST", "/jobs", 429, count=1, retry_after=0.1),
                        Fault("GET", "/jobs/", 500, count=2)]
    fake_kube.expire_watches = 2
    fake_kube.script = PodScript(drop_log_after_lines=1, creating_s=2.0)
    result = run(reprun, fake_kube, project, "-e", "slow")
    assert result.code == 0, result.stderr
    assert result.stdout.count("hello world\n") == 1
    assert "SECOND LINE\n" in result.stdout
    statuses = [r[2] for r in fake_kube.requests]
    assert statuses.count(503) == 2 and statuses.count(429) == 1 and statuses.count(500) == 2
    facts = reprun.last_record()["backend"]["facts"]
    assert facts["watch_restarts"] >= 1
    assert facts["log_reconnects"] >= 1


def test_forbidden_is_one_clean_line(reprun: Reprun, fake_kube: FakeKube,
                                     project: Path) -> None:
    fake_kube.faults = [Fault("POST", "/jobs", 403, count=99)]
    result = run(reprun, fake_kube, project)
    assert result.code == 1
    assert result.error_lines == [
        "reprun: error: Kubernetes API refused to create the Job in namespace 'default' "
        '(403 Forbidden): jobs.batch is forbidden: User "tester" cannot create resource "jobs" '
        'in API group "batch" in the namespace "default"; the kubeconfig user lacks the '
        "permission (RBAC); ask for it in that namespace"]
    assert "Traceback" not in result.stderr
    assert reprun.last_record()["status"] == "FAILED"


def test_invalid_job_is_reported_with_the_field(
        reprun: Reprun, fake_kube: FakeKube, project: Path, tmp_path: Path) -> None:
    template = tmp_path / "job.yaml"
    template.write_text("spec:\n  template:\n    spec:\n      containers:\n"
                        "        - {name: main}\n        - {name: sidecar}\n")
    result = run(reprun, fake_kube, project,
                 cfg=config(project, **{"kube-job-template-path": str(template)}))
    assert result.code == 1
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert "(422 Unprocessable Entity)" in line
    assert "spec.template.spec.containers[1].image: Required value" in line


def test_template_merge_reaches_the_cluster(
        reprun: Reprun, fake_kube: FakeKube, project: Path, tmp_path: Path) -> None:
    template = tmp_path / "job.yaml"
    template.write_text("metadata:\n  labels: {team: vision}\nspec:\n  template:\n"
                        "    spec:\n      priorityClassName: low\n      containers:\n"
                        "        - name: trainer\n          env: [{name: KEEP, value: kept}]\n")
    cfg = config(project, **{"kube-job-template-path": str(template)})
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config", cfg,
                    "-e", "secret", env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code == 0, result.stderr
    created = fake_kube.created_jobs[0]
    assert created["metadata"]["labels"]["team"] == "vision"
    pod = created["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "low"
    assert pod["containers"][0]["name"] == "trainer"
    assert {"name": "KEEP", "value": "kept"} in pod["containers"][0]["env"]


def test_dry_run_prints_the_manifest_and_contacts_nothing(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                    config(project, image="127.0.0.1:9/reprun/app:v1", resources={"gpu": 1}),
                    "--dry-run", "--json", env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code == 0, result.stderr
    job = result.json()["submission"]
    assert job["kind"] == "Job"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "127.0.0.1:9/reprun/app:v1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert fake_kube.requests == []


def test_dry_run_prints_the_shell_wrapper_as_a_block(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                    config(project, image="127.0.0.1:9/reprun/app:v1"), "--dry-run",
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code == 0, result.stderr
    assert "\\n" not in result.stdout  # no line of the wrapper escaped into one string
    lines = result.stdout.splitlines()
    block = [i for i, line in enumerate(lines) if line.rstrip().endswith(("- |-", "- |", ": |-"))]
    assert block, result.stdout
    assert any(len(lines) > i + 5 for i in block)
    import yaml

    submission = result.stdout[result.stdout.index("apiVersion:"):]
    assert yaml.safe_load(submission)["kind"] == "Job"  # still the manifest, to the letter


@pytest.mark.parametrize(("cfg", "expected"), [
    ('{"image": ', "--backend-config is not valid JSON"),
    ('{"imag": "x"}', "--backend-config imag: unknown key"),
    ('{"backoff_limit": -1}', "--backend-config backoff_limit: Input should be greater than"),
    ("{}", "'repository-uri' is missing from the backend config"),
    ("missing.yaml", "--backend-config 'missing.yaml' is neither inline JSON nor an existing"),
])
def test_bad_backend_config_is_one_line(reprun: Reprun, fake_kube: FakeKube, project: Path,
                                        cfg: str, expected: str) -> None:
    result = run(reprun, fake_kube, project, cfg=cfg)
    assert result.code in (1, 2)
    assert len(result.error_lines) == 1 and expected in result.error_lines[0], result.stderr


def test_bad_key_in_a_config_file_names_file_and_line(
        reprun: Reprun, fake_kube: FakeKube, project: Path, tmp_path: Path) -> None:
    path = tmp_path / "k8s.yaml"
    path.write_text(f"image: {IMAGE}\nresources:\n  gpu: many\n")
    result = run(reprun, fake_kube, project, cfg=str(path))
    assert result.code == 2
    assert result.error_lines[0].startswith(f"reprun: error: {path}:3: resources.gpu: ")


def test_local_backend_refuses_detach(reprun: Reprun, project: Path) -> None:
    result = reprun("run", str(project), "--detach")
    assert result.code == 2
    assert "--detach applies to remote backends" in result.error_lines[0]


def test_an_existing_image_is_the_environment_of_a_python_env_project(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    """With 'image' in the config nothing is resolved on the submitting machine."""
    project = make_project(MLPROJECT.replace("name: Kube Demo", "name: py\npython_env: env.yaml"),
                           files={"env.yaml": "dependencies: [does-not-exist-anywhere==1.0]\n"},
                           name="py")
    planned = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                     config(project), "--dry-run", "--json",
                     env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert planned.code == 0, planned.stderr
    assert planned.json()["environment"]["manager"] == "docker"
    local = reprun("run", str(project), "--dry-run", "--json")
    assert local.json()["environment"]["manager"] == "uv"
    ran = run(reprun, fake_kube, project)
    assert ran.code == 0, ran.stderr  # uv would have failed to resolve does-not-exist-anywhere
    record = reprun.last_record()
    assert record["environment"]["manager"] == "docker"
    assert record["environment"]["packages"] == []
