"""Sweeps on the docker backend against a real engine: the image built once, trials in
containers in parallel, Ctrl-C leaves no container."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from conftest import MakeProject, Reprun

pytestmark = pytest.mark.docker

SCRIPT = """
import os, sys, time
k = int(sys.argv[1])
if sys.argv[2] == "1":
    print("holding", flush=True)
    time.sleep(600)
print(f"score: {k * k}")
"""
MLPROJECT = """
    name: dsweep
    entry_points:
      main:
        parameters: {k: {type: int, default: 0}, hold: {type: int, default: 0}}
        command: "python score.py {k} {hold}"
        metrics: {stdout: true}
"""


def _sweep(reprun: Reprun) -> dict[str, Any]:
    (directory,) = (reprun.home / "sweeps").iterdir()
    data: dict[str, Any] = json.loads((directory / "sweep.json").read_text())
    return data


def test_docker_sweep_builds_the_image_once(
        reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str) -> None:
    project = make_project(MLPROJECT.replace("dsweep", image_repo), {"score.py": SCRIPT},
                           name=image_repo)
    result = reprun("sweep", str(project), "-P", "k=1..4", "--parallel", "2", "--backend",
                    "docker", "--docker-base-image", base_image, "--metric", "score:max",
                    "--verbose", timeout=600)
    assert result.code == 0, result.stderr
    builds = [line for line in result.stderr.splitlines() if "building image" in line]
    assert len(builds) == 1 and builds[0].startswith("reprun: trial 0: "), result.stderr
    saved = _sweep(reprun)
    assert [t["value"] for t in saved["trials"]] == [1.0, 4.0, 9.0, 16.0]
    docker = [reprun.record(t["run_id"])["backend"]["docker"] for t in saved["trials"]]
    assert [d["built"] for d in docker] == [True, False, False, False]
    assert len({d["image_id"] for d in docker}) == 1


def test_docker_sweep_ctrl_c_leaves_no_container(
        reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str,
        docker_client: Any) -> None:
    project = make_project(MLPROJECT.replace("dsweep", image_repo), {"score.py": SCRIPT},
                           name=image_repo)
    proc = reprun.popen("sweep", str(project), "-P", "k=1..3", "--parallel", "2", "--backend",
                        "docker", "--docker-base-image", base_image, "--grace-period", "4",
                        "-P", "hold=1")
    deadline = time.monotonic() + 300

    def logs_holding() -> int:
        runs = reprun.home / "runs"
        return sum(1 for log in runs.glob("*/output.log") if "holding" in log.read_text()) \
            if runs.is_dir() else 0

    while logs_holding() < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the trials did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    saved = _sweep(reprun)
    assert [t["status"] for t in saved["trials"]] == ["KILLED", "KILLED", None]
    for trial in saved["trials"][:2]:
        assert not docker_client.containers.list(all=True, filters={
            "label": f"reprun.run_id={trial['run_id']}"})
