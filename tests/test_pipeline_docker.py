"""A pipeline whose step runs in Docker (a step's own backend) against a real engine: it reads
the outputs of a local step, and a rerun reuses every step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, Reprun, init_repo
from test_pipeline import pipeline_id, record, steps_said

pytestmark = pytest.mark.docker


def test_a_step_in_docker_between_local_steps(reprun: Reprun, tmp_path: Path, base_image: str,
                                              image_repo: str) -> None:
    project = tmp_path / image_repo
    shutil.copytree(EXAMPLES / "multistep", project)
    spec = project / "MLproject"
    text = spec.read_text().replace("name: multistep", f"name: {image_repo}")
    text = text.replace('train:    {entry_point: train, ',
                        'train:    {entry_point: train, backend: docker, ')
    spec.write_text(text)
    init_repo(project)
    args = ("run", str(project), "-e", "all", "--docker-base-image", base_image)
    first = reprun(*args, timeout=600)
    assert first.code == 0, first.stderr
    assert steps_said(first.stderr) == {"prep": "ran", "train": "ran", "evaluate": "ran"}
    top = record(reprun, pipeline_id(first.stderr))
    backends = {s["name"]: record(reprun, s["run_id"])["backend"]["name"]
                for s in top["pipeline"]["steps"]}
    assert backends == {"prep": "local", "train": "docker", "evaluate": "local"}
    assert "evaluate.mse" in top["metrics"]
    again = reprun(*args, timeout=600)
    assert again.code == 0, again.stderr
    assert steps_said(again.stderr) == {"prep": "reused", "train": "reused",
                                        "evaluate": "reused"}
