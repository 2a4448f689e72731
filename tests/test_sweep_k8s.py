"""Sweeps on Kubernetes (the fake API server of tests/fakekube.py): one Job per trial, at most
--parallel at once, and Ctrl-C deletes every Job of the sweep."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import test_k8s_build
from conftest import MakeProject, Reprun
from fakekube import FakeKube

# The fixtures tiny_base (a one-file base image) and cleanup of test_k8s_build, here.
tiny_base_fixture = test_k8s_build.tiny_base
cleanup_fixture = test_k8s_build.cleanup
DIGEST = "sha256:" + "0f" * 32
IMAGE = f"127.0.0.1:9/reprun/app@{DIGEST}"  # no registry listens on port 9: nothing is pushed
MLPROJECT = """
name: kube-sweep
entry_points:
  main:
    parameters:
      k: {type: int, default: 0}
      pause: {type: float, default: 0}
    command: "sleep {pause}; echo score: {k}"
    metrics:
      stdout: true
"""


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    return make_project(MLPROJECT)


def config(project: Path) -> str:
    return json.dumps({"image": IMAGE, "poll_seconds": 0.3, "working_dir": str(project)})


def running_pods(fake: FakeKube) -> int:
    with fake.lock:
        return sum(1 for p in fake.pods.values() if p["status"].get("phase") == "Running")


def sweep_of(reprun: Reprun) -> dict[str, Any]:
    (directory,) = (reprun.home / "sweeps").iterdir()
    data: dict[str, Any] = json.loads((directory / "sweep.json").read_text())
    return data


def test_one_job_per_trial_at_most_parallel_at_once(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    most = 0
    proc = reprun.popen("sweep", str(project), "-P", "k=1..4", "-P", "pause=1",
                        "--parallel", "2", "--metric", "score:max", "--backend", "kubernetes",
                        "--backend-config", config(project),
                        env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    while proc.poll() is None:
        most = max(most, running_pods(fake_kube))
        time.sleep(0.05)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert most == 2  # pause=1: two trials' pods run together, never three
    created = [r for r in fake_kube.requests if r[0] == "POST" and r[1].endswith("/jobs")]
    assert len(created) == 4
    assert running_pods(fake_kube) == 0  # finished Jobs stay until their TTL, as on a cluster
    saved = sweep_of(reprun)
    assert [t["status"] for t in saved["trials"]] == ["FINISHED"] * 4
    assert [t["value"] for t in saved["trials"]] == [1.0, 2.0, 3.0, 4.0]
    record = reprun.record(saved["trials"][2]["run_id"])
    assert record["backend"]["name"] == "kubernetes"
    assert record["sweep"] == {"id": saved["sweep_id"], "trial": 2}
    shown = reprun("sweep", "show", saved["sweep_id"], "--csv").stdout.splitlines()
    assert shown[1].startswith("1,3,FINISHED,4.0,4,1,")


def test_ctrl_c_deletes_every_job_of_the_sweep(
        reprun: Reprun, fake_kube: FakeKube, project: Path) -> None:
    proc = reprun.popen("sweep", str(project), "-P", "k=1..3", "-P", "pause=300",
                        "--parallel", "2", "--backend", "kubernetes",
                        "--backend-config", config(project),
                        env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    deadline = time.monotonic() + 60
    while running_pods(fake_kube) < 2:
        assert time.monotonic() < deadline, "the trials' pods did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not fake_kube.jobs and not fake_kube.pods
    saved = sweep_of(reprun)
    assert [t["status"] for t in saved["trials"]] == ["KILLED", "KILLED", None]
    for trial in saved["trials"][:2]:
        record = reprun.record(trial["run_id"])
        assert record["status"] == "KILLED" and "the Job was deleted" in record["reason"]


@pytest.mark.docker
def test_the_image_is_built_and_pushed_once_for_every_trial(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        tiny_base_fixture: str, image_repo: str, cleanup_fixture: list[str]) -> None:
    project = make_project(f"""
        name: {image_repo}
        docker_env:
          image: {tiny_base_fixture}
        entry_points:
          main:
            parameters: {{k: {{type: int, default: 0}}}}
            command: "echo score: {{k}}"
            metrics: {{stdout: true}}
    """, name=image_repo)
    repo = f"{registry}/team/sweep"
    result = reprun("sweep", str(project), "-P", "k=1..4", "--parallel", "2", "--backend",
                    "kubernetes", "--backend-config",
                    json.dumps({"poll_seconds": 0.3, "repository-uri": repo}),
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path)}, timeout=600)
    assert result.code == 0, result.stderr
    saved = sweep_of(reprun)
    facts = [reprun.record(t["run_id"])["backend"]["facts"] for t in saved["trials"]]
    cleanup_fixture.append(facts[0]["image_id"])
    assert [f["image_built"] for f in facts] == [True, False, False, False]
    assert [f["image_pushed"] for f in facts] == [True, False, False, False]
    assert len({f["image"] for f in facts}) == 1  # one digest for every Job
