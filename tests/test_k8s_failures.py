"""Layer 2: what a real cluster did to the kubernetes backend (issue 13), reproduced by the fake
API server of tests/fakekube.py: pods that can never be created or started, outputs, reproduce,
untimestamped kubelet lines, a Job deleted by its TTL, partial RBAC, Ctrl-C with a grace period."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, Result
from fakekube import FakeKube, Fault, PodScript
from k8s_checks import assert_outputs_came_back
from test_k8s_contract import IMAGE, running_pod, wait_for

MLPROJECT = """
name: kube-issues
entry_points:
  main:
    command: "echo hello && echo second line"
  outputs:
    parameters:
      n: {type: int, default: 3}
    command: >-
      echo writing &&
      seq 1 {n} > $REPRUN_OUTPUT_DIR/numbers.txt &&
      mkdir -p $REPRUN_OUTPUT_DIR/model &&
      printf weights > $REPRUN_OUTPUT_DIR/model/w.bin &&
      echo done
  big:
    command: >-
      head -c 300000 /dev/urandom > $REPRUN_OUTPUT_DIR/big.bin;
      echo small > $REPRUN_OUTPUT_DIR/s.txt
  stubborn:
    command: "trap 'echo ignoring TERM' TERM; echo ready; while :; do sleep 0.2; done"
  short:
    command: "echo quick"
"""


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    return make_project(MLPROJECT)


def config(project: Path, **extra: Any) -> str:
    return json.dumps({"image": IMAGE, "poll_seconds": 0.3, "working_dir": str(project),
                       **extra})


def kube(reprun: Reprun, fake: FakeKube, *args: str, timeout: float = 120) -> Result:
    return reprun(*args, env={"KUBECONFIG": str(fake.kubeconfig_path)}, timeout=timeout)


def run(reprun: Reprun, fake: FakeKube, project: Path, *args: str, **extra: Any) -> Result:
    return kube(reprun, fake, "run", str(project), "--backend", "kubernetes", "--backend-config",
                config(project, **extra), *args)


# -- 5: a pod that can never be created or started -------------------------------------------

def test_missing_service_account_is_shown_and_ends_the_run(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, service_account="nobody",
                 start_timeout_seconds=600)  # it ends long before: the cause cannot go away
    assert result.code == 1
    assert ('reprun: kubernetes: Job kube-issues-' in result.stderr
            and 'FailedCreate: Error creating: pods "kube-issues-' in result.stderr)
    notes = [line for line in result.stderr.splitlines() if "reprun: kubernetes:" in line]
    assert len(notes) == 1 and "FailedCreate" in notes[0]  # shown once, not at every retry
    record = reprun.last_record()
    assert record["status"] == "FAILED"
    assert record["reason"].startswith("FailedCreate: Error creating: pods ")
    assert 'serviceaccount "nobody" not found' in record["reason"]
    assert record["reason"].endswith("(this cannot resolve itself: the run was not started)")
    assert record["backend"]["facts"]["warnings"]
    assert not fake_kube.jobs
    assert f"FAILED in {record['duration_s']:.2f} s: FailedCreate" in result.stderr


def test_exceeded_quota_is_shown_and_ends_the_run(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(quota_exceeded=True)
    result = run(reprun, fake_kube, project, start_timeout_seconds=2)
    assert result.code == 1
    assert "exceeded quota: compute" in result.stderr
    assert "exceeded quota: compute" in reprun.last_record()["reason"]
    assert not fake_kube.jobs


def test_a_quota_the_pod_can_never_fit_ends_the_run_at_once(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(quota_exceeded=True, quota_limit="1Gi")
    result = run(reprun, fake_kube, project, start_timeout_seconds=600)
    assert result.code == 1
    reason = reprun.last_record()["reason"]
    assert "exceeded quota: compute" in reason
    assert reason.endswith("(this cannot resolve itself: the run was not started)")
    assert not fake_kube.jobs


def test_the_root_ca_mount_warning_is_shown_only_if_the_pod_does_not_start(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(root_ca_not_registered=True)
    result = run(reprun, fake_kube, project)
    assert result.code == 0, result.stderr
    assert "kube-root-ca.crt" not in result.stderr
    fake_kube.script = PodScript(root_ca_not_registered=True, creating_s=float("inf"))
    result = run(reprun, fake_kube, project, start_timeout_seconds=2)
    assert result.code == 1
    assert "FailedMount" in result.stderr and "kube-root-ca.crt" in result.stderr


def test_a_sandbox_that_never_comes_up(reprun: Reprun, fake_kube: FakeKube,
                                       project: Path) -> None:
    fake_kube.script = PodScript(sandbox_fails=True)
    result = run(reprun, fake_kube, project, start_timeout_seconds=2)
    assert result.code == 1
    assert "reprun: kubernetes: Pod kube-issues-" in result.stderr
    assert "FailedCreatePodSandBox: Failed to create pod sandbox" in result.stderr
    assert reprun.last_record()["reason"].startswith("FailedCreatePodSandBox: ")
    assert not fake_kube.jobs and not fake_kube.pods


def test_a_pod_stuck_in_container_creating(reprun: Reprun, fake_kube: FakeKube,
                                           project: Path) -> None:
    fake_kube.script = PodScript(creating_s=float("inf"))
    result = run(reprun, fake_kube, project, start_timeout_seconds=1)
    assert result.code == 1
    assert reprun.last_record()["reason"] == (
        "the pod stayed Pending (ContainerCreating) (the container did not start within 1 s: "
        "start_timeout_seconds)")
    assert not fake_kube.jobs and not fake_kube.pods


def test_a_missing_claim_is_shown_as_the_scheduler_says(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT.replace(
        "name: kube-issues", "name: kube-issues\ndocker_env:\n  image: x\n"
                             "  volumes: ['datasets:/data']"))
    result = run(reprun, fake_kube, project, unschedulable_timeout_seconds=1)
    assert result.code == 1
    assert 'FailedScheduling: 0/1 nodes are available: 1 persistentvolumeclaim "datasets" not ' \
           'found.' in result.stderr
    assert reprun.last_record()["reason"].startswith(
        'Unschedulable: 0/1 nodes are available: 1 persistentvolumeclaim "datasets" not found.')


# -- 4: a relative docker_env volume --------------------------------------------------------

def test_a_relative_volume_is_refused_before_anything_is_created(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT.replace(
        "name: kube-issues", "name: kube-issues\ndocker_env:\n  image: x\n"
                             "  volumes: ['./data:/data:ro']"))
    result = run(reprun, fake_kube, project)
    assert result.code == 2
    assert result.error_lines == [
        "reprun: error: docker_env.volumes[0]: './data' in './data:/data:ro' is neither a "
        "PersistentVolumeClaim name (lower case letters, digits, '-' and '.') nor an absolute "
        "path on the node; on Kubernetes name a claim ('my-claim:/data') or give an absolute "
        "node path with allow_host_path: true; a path on this machine cannot be mounted in a "
        "pod"]
    assert not fake_kube.created_jobs


# -- 2 and 3: outputs come back ---------------------------------------------------------------

def test_outputs_come_back_with_sizes_and_digests(reprun: Reprun, fake_kube: FakeKube,
                                                  project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "outputs")
    assert result.code == 0, result.stderr
    assert result.stdout == "writing\ndone\n"  # the archive is not the user's output
    record = reprun.last_record()
    assert_outputs_came_back(record, {"numbers.txt": b"1\n2\n3\n", "model/w.bin": b"weights"})
    assert reprun("runs", "logs", record["run_id"]).stdout == "writing\ndone\n"


def test_outputs_over_the_limit_are_named(reprun: Reprun, fake_kube: FakeKube,
                                          project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "big", outputs_max_bytes=10000)
    assert result.code == 0, result.stderr
    assert "reprun: warning: outputs not collected: their archive is " in result.stderr
    assert "over outputs_max_bytes (10000); files left in the pod: " in result.stderr
    record = reprun.last_record()
    assert record["outputs"] == []
    assert "big.bin" in record["backend"]["facts"]["outputs_problem"]


def test_a_detached_run_brings_its_outputs_back_when_shown(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "outputs", "--detach")
    assert result.code == 0, result.stderr
    assert result.stderr.count("submitted") == 1
    run_id = reprun.last_record()["run_id"]

    def ended() -> bool:
        return bool(kube(reprun, fake_kube, "runs", "show", run_id, "--json").json()["status"]
                    != "RUNNING")

    wait_for(ended, "the detached run to end")
    record = reprun.record(run_id)
    assert record["status"] == "FINISHED"
    assert sorted(o["path"] for o in record["outputs"]) == ["model/w.bin", "numbers.txt"]
    assert reprun("runs", "logs", run_id).stdout == "writing\ndone\n"


# -- 1: reproduce ---------------------------------------------------------------------------

def test_reproduce_check_on_kubernetes(reprun: Reprun, fake_kube: FakeKube,
                                       project: Path) -> None:
    first = run(reprun, fake_kube, project, "-e", "outputs", "-P", "n=4")
    assert first.code == 0, first.stderr
    original = reprun.last_record()
    recorded = original["backend"]["facts"]["backend_config"]
    assert recorded["image"] == IMAGE and recorded["poll_seconds"] == 0.3
    again = kube(reprun, fake_kube, "reproduce", original["run_id"][:8], "--check")
    assert again.code == 0, again.stderr
    assert "outputs identical: 2 file(s)" in again.stderr
    record = reprun.last_record()
    assert record["reproduces"] == original["run_id"]
    assert record["backend"]["name"] == "kubernetes"
    assert record["backend"]["facts"]["image"] == IMAGE
    assert record["parameters"] == {"n": "4"}


def test_reproduce_takes_backend_config_keys_that_replace_the_recorded_ones(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    assert run(reprun, fake_kube, project, "-e", "outputs").code == 0
    original = reprun.last_record()
    again = kube(reprun, fake_kube, "reproduce", original["run_id"], "--backend-config",
                 json.dumps({"labels": {"purpose": "audit"}}))
    assert again.code == 0, again.stderr
    created = fake_kube.created_jobs[-1]
    assert created["spec"]["template"]["metadata"]["labels"]["purpose"] == "audit"
    assert created["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    bad = kube(reprun, fake_kube, "reproduce", original["run_id"], "--backend-config",
               '{"labels": {"a b": "c"}}')
    assert bad.code == 2
    assert "--backend-config labels: 'a b' is not a valid key" in bad.error_lines[0]


# -- 6: kubelet lines without a timestamp -----------------------------------------------------

def test_kubelet_lines_are_not_program_output_and_do_not_break_deduplication(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT.replace('"echo hello && echo second line"',
                                             '"echo one; sleep 1; echo two; sleep 1; echo three"'))
    fake_kube.script = PodScript(drop_log_after_lines=1, kubelet_error_on_reconnect=True)
    result = run(reprun, fake_kube, project)
    assert result.code == 0, result.stderr
    assert result.stdout == "one\ntwo\nthree\n"
    assert "error: code =" not in result.stdout
    assert ("the log of pod kube-issues-" in result.stderr
            and "carried a kubelet message (not program output; reprun reconnects): rpc error: "
                "code = NotFound" in result.stderr)


# -- 7: a detached run that fails while waiting is cleaned up ---------------------------------

def test_a_detached_run_that_cannot_pull_is_cleaned_up_when_shown(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(image_pull_backoff=True)
    assert run(reprun, fake_kube, project, "--detach").code == 0
    run_id = reprun.last_record()["run_id"]

    def ended() -> bool:
        return bool(kube(reprun, fake_kube, "runs", "show", run_id, "--json").json()["status"]
                    != "RUNNING")

    wait_for(ended, "the detached run to end")
    record = reprun.record(run_id)
    assert record["status"] == "FAILED"
    assert record["reason"].startswith("ImagePullBackOff")
    assert not fake_kube.jobs and not fake_kube.pods


def test_a_detached_run_whose_pod_never_starts_ends_after_the_start_timeout(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    assert run(reprun, fake_kube, project, "--detach", service_account="ghost",
               start_timeout_seconds=1).code == 0
    run_id = reprun.last_record()["run_id"]

    def ended() -> bool:
        return bool(kube(reprun, fake_kube, "runs", "show", run_id, "--json").json()["status"]
                    != "RUNNING")

    wait_for(ended, "the detached run to end")
    record = reprun.record(run_id)
    assert record["status"] == "FAILED"
    assert 'serviceaccount "ghost" not found' in record["reason"]
    assert not fake_kube.jobs


# -- 8: ttlSecondsAfterFinished: 0 ------------------------------------------------------------

def test_ttl_zero_keeps_successes_successes(reprun: Reprun, fake_kube: FakeKube,
                                            project: Path) -> None:
    for _ in range(3):
        result = run(reprun, fake_kube, project, "-e", "outputs", ttl_seconds_after_finished=0)
        assert result.code == 0, result.stderr
        record = reprun.last_record()
        assert record["status"] == "FINISHED", record["reason"]
        assert len(record["outputs"]) == 2
    assert not fake_kube.jobs


def test_a_detached_run_with_ttl_zero_keeps_its_pod_until_shown(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = run(reprun, fake_kube, project, "-e", "outputs", "--detach",
                 ttl_seconds_after_finished=0)
    assert result.code == 0, result.stderr
    assert "warning: the Job is deleted 0 s after it ends (ttlSecondsAfterFinished); its pod " \
           "waits (finalizer reprun.dev/outcome)" in result.stderr
    run_id = reprun.last_record()["run_id"]

    def ttl_fired() -> bool:
        with fake_kube.lock:
            return any(j["metadata"].get("deletionTimestamp") for j in fake_kube.jobs.values())

    wait_for(ttl_fired, "the TTL to delete the Job")
    shown = kube(reprun, fake_kube, "runs", "show", run_id, "--json").json()
    assert shown["status"] == "FINISHED", shown["reason"]
    assert len(shown["outputs"]) == 2
    assert reprun("runs", "logs", run_id).stdout == "writing\ndone\n"
    wait_for(lambda: not fake_kube.jobs and not fake_kube.pods, "the TTL to finish")


def test_a_detached_run_whose_job_vanished_is_unknown_not_failed(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    assert run(reprun, fake_kube, project, "-e", "short", "--detach").code == 0
    run_id = reprun.last_record()["run_id"]

    def succeeded() -> bool:
        with fake_kube.lock:
            return any(p["status"].get("phase") == "Succeeded" for p in fake_kube.pods.values())

    wait_for(succeeded, "the pod to succeed")
    with fake_kube.lock:  # someone deletes it (kubectl delete job, a namespace cleanup...)
        for namespace, name in list(fake_kube.jobs):
            fake_kube.delete_job(namespace, name, "Background")
    shown = kube(reprun, fake_kube, "runs", "show", run_id, "--json").json()
    assert shown["status"] == "UNKNOWN"
    assert shown["reason"].startswith("outcome unknown: the Job was deleted before reprun read "
                                      "its status")
    cancel = kube(reprun, fake_kube, "cancel", run_id)
    assert "has already ended: UNKNOWN" in cancel.stderr


# -- 12: partial RBAC -------------------------------------------------------------------------

def test_missing_permissions_are_found_before_anything_is_created(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.denied = {("list", "pods"), ("get", "pods/log")}
    result = run(reprun, fake_kube, project)
    assert result.code == 1
    assert result.error_lines == [
        "reprun: error: the kubeconfig user may not list pods, get pods/log in namespace "
        "'default', which reprun needs to run and follow a Job; nothing was created; ask for "
        "these permissions (a Role bound to the user) or use another namespace or context"]
    assert not fake_kube.created_jobs


def test_a_job_whose_pods_cannot_be_listed_is_deleted(reprun: Reprun, fake_kube: FakeKube,
                                                      project: Path) -> None:
    # The access review says yes, the API says no (an admission webhook, a changed Role...).
    fake_kube.faults = [Fault("GET", "/pods", 403, count=999)]
    result = run(reprun, fake_kube, project)
    assert result.code == 1
    assert 'pods is forbidden: User "tester" cannot list resource "pods"' in (
        result.error_lines[0])
    assert fake_kube.created_jobs and not fake_kube.jobs
    assert reprun.last_record()["status"] == "FAILED"


# -- 11: Ctrl-C says so and honours --grace-period -------------------------------------------

def test_ctrl_c_says_stopping_and_honours_the_grace_period(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    proc = reprun.popen("run", str(project), "-e", "stubborn", "--backend", "kubernetes",
                        "--backend-config", config(project), "--grace-period", "1",
                        env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    wait_for(lambda: running_pod(fake_kube), "a running pod")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "reprun: stopping: deleting Job kube-issues-" in err
    assert "(its pod gets 1 s to stop, --grace-period)..." in err
    deletes = [r for r in fake_kube.requests if r[0] == "DELETE" and "/pods/" in r[1]]
    assert deletes
    assert not fake_kube.jobs and not fake_kube.pods


# -- 13: reprun validate --backend-config -----------------------------------------------------

def test_validate_backend_config_prints_every_problem(reprun: Reprun, tmp_path: Path) -> None:
    path = tmp_path / "k8s.yaml"
    path.write_text("imag: x\nbackoff_limit: -1\nlabels: {'a b': c}\n")
    result = reprun("validate", "--backend-config", str(path))
    assert result.code == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"error: {path}:") for line in lines)
    assert any("imag: unknown key" in line for line in lines)
    good = tmp_path / "good.yaml"
    good.write_text("repository-uri: registry.example.com/team/app\nhost_network: true\n")
    ok = reprun("validate", "--backend-config", str(good))
    assert ok.code == 0, ok.stdout
    assert ok.stdout == ("ok: kubernetes backend config: image built into "
                         "registry.example.com/team/app\n")


def test_a_run_with_several_config_problems_names_validate(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    result = kube(reprun, fake_kube, "run", str(project), "--backend", "kubernetes",
                  "--backend-config", '{"imag": 1, "backoff_limit": -1}')
    assert result.code == 2
    assert result.error_lines[0].endswith(
        "(and 1 more problem(s): run 'reprun validate --backend-config CONFIG')")


# -- 14: smaller ones --------------------------------------------------------------------------

def test_a_short_pod_still_shows_running_and_no_reconnects(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    fake_kube.script = PodScript(creating_s=1.5)
    result = run(reprun, fake_kube, project, "-e", "short", poll_seconds=3)
    assert result.code == 0, result.stderr
    facts = reprun.last_record()["backend"]["facts"]
    phases = [p["phase"] for p in facts["pod_phases"]]
    assert "Running" in phases and phases[-1] == "Succeeded"
    assert facts["log_reconnects"] == 0


def test_oom_is_the_reason_on_the_final_line(reprun: Reprun, fake_kube: FakeKube,
                                             project: Path) -> None:
    fake_kube.script = PodScript(oom=True)
    result = run(reprun, fake_kube, project)
    assert result.code == 137
    assert " FAILED in " in result.stderr and "s: OOMKilled: the container ran out of memory" in (
        result.stderr)


# -- 9: a kubeconfig that skips TLS verification ----------------------------------------------

def test_insecure_kubeconfig_is_one_note_not_a_flood(tmp_path: Path, reprun: Reprun,
                                                     project: Path) -> None:
    from fakekube import running

    node = tmp_path / "tls-node"
    node.mkdir()
    with running(node, tls=True) as fake:
        kubeconfig = fake.kubeconfig(tmp_path / "tls-kubeconfig.json")
        result = reprun("run", str(project), "-e", "short", "--backend", "kubernetes",
                        "--backend-config", config(project), env={"KUBECONFIG": str(kubeconfig)},
                        timeout=120)
    assert result.code == 0, result.stderr
    assert result.stdout == "quick\n"
    assert "InsecureRequestWarning" not in result.stderr
    assert result.stderr.count("skips TLS verification") == 1
