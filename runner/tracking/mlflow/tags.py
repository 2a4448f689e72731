"""A reprun run as MLflow data: the tags ``mlflow run`` sets, reprun's own tags, the parameters as
``mlflow run`` logs them, and the inputs as MLflow datasets."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping
from typing import Any

from runner.record.types import RunRecord
from runner.redact import redact_url
from runner.tracking.mlflow.client import Pair

Op = dict[str, Any]


def ms(seconds: float | None = None) -> int:
    return int((time.time() if seconds is None else seconds) * 1000)


def source_name(record: RunRecord) -> str:
    """``mlflow.source.name``: a local project in git is ``file://<repo root>#<subdir>``, a
    local one outside git its path, a git URL the URL (credentials removed)."""
    uri = record.project.uri
    if "://" in uri or (uri.split(":", 1)[0].count("@") == 1 and ":" in uri):
        return redact_url(uri.split("#", 1)[0]) + (f"#{uri.split('#', 1)[1]}" if "#" in uri
                                                   else "")
    src = record.source
    if src.git_commit and src.uri:
        return f"file://{src.uri}" + (f"#{src.subdirectory}" if src.subdirectory else "")
    return record.project.path


def project_env(record: RunRecord) -> str | None:
    """``mlflow.project.env``: docker, virtualenv, uv or conda; none for a local environment."""
    if record.backend.name in ("docker", "kubernetes"):
        return "docker"
    manager = record.environment.manager
    return None if manager == "local" else manager


def mlflow_tags(record: RunRecord, run_name: str | None, parent_run_id: str | None = None
                ) -> list[Pair]:
    """The tags ``mlflow run`` sets when it creates the run (mlflow/projects/utils.py)."""
    src = record.source
    import getpass

    tags: list[Pair] = [
        ("mlflow.user", getpass.getuser()),
        ("mlflow.source.name", source_name(record)),
        ("mlflow.source.type", "PROJECT"),
        ("mlflow.project.entryPoint", record.entry_point),
    ]
    if src.git_commit:
        tags.append(("mlflow.source.git.commit", src.git_commit))
    if src.git_remote:
        tags.append(("mlflow.source.git.repoURL", redact_url(src.git_remote)))
    if src.requested_version and src.git_branch == src.requested_version:
        tags.append(("mlflow.source.git.branch", src.git_branch))
    if parent_run_id:
        tags.append(("mlflow.parentRunId", parent_run_id))
    if run_name:
        tags.append(("mlflow.runName", run_name))
    env = project_env(record)
    if env:
        tags.append(("mlflow.project.env", env))
    return tags + reprun_tags(record)


def reprun_tags(record: RunRecord) -> list[Pair]:
    """reprun's own: its run id, the lock's digest, uncommitted changes, what it reproduces."""
    tags: list[Pair] = [("reprun.run_id", record.run_id)]
    if record.source.git_dirty is not None:
        tags.append(("reprun.source.dirty", str(record.source.git_dirty).lower()))
    if record.source.patch_sha256:
        tags.append(("reprun.source.patch_sha256", record.source.patch_sha256))
    if record.reproduces:
        tags.append(("reprun.reproduces", record.reproduces))
    return tags


def environment_tags(record: RunRecord) -> list[Pair]:
    """Known once the environment is locked and the backend has started the command."""
    tags: list[Pair] = [
        ("mlflow.project.backend", record.backend.name if record.backend.name in (
            "kubernetes", "slurm") else "local"),
        ("reprun.backend", record.backend.name),
        ("reprun.env_manager", record.environment.manager),
    ]
    if record.environment.lock_sha256:
        tags.append(("reprun.lock_sha256", record.environment.lock_sha256))
    docker = record.backend.docker
    if docker is not None:
        tags.append(("mlflow.docker.image.uri", docker.image))
        image_id = docker.repo_digest if record.backend.name == "kubernetes" else None
        if image_id or docker.image_id:
            tags.append(("mlflow.docker.image.id", image_id or docker.image_id or ""))
    return tags


def mlflow_params(values: Mapping[str, str], given: Mapping[str, str] | None = None
                  ) -> list[Pair]:
    """Every parameter as ``mlflow run`` logs it: shell-quoted, a ``path`` as it was given."""
    given = given or {}
    return [(name, shlex.quote(given.get(name, value))) for name, value in values.items()]


def input_logging(record: RunRecord) -> tuple[list[Pair], list[Op]]:
    """Tags and ``runs/log-inputs`` datasets for the data the run read (its fingerprints).

    MLflow's dataset digest holds at most 36 characters: the first 32 hex digits go there; the
    full digest goes into the source JSON and a tag ``reprun.input.<name>``.
    """
    tags: list[Pair] = []
    datasets: list[Op] = []
    for item in record.inputs:
        if item.digest is None:
            continue
        tags.append((f"reprun.input.{item.name}", item.digest))
        source = json.dumps({"path": item.path, "digest": item.digest, "kind": item.kind})
        datasets.append({"tags": [{"key": "mlflow.data.context", "value": "input"}],
                         "dataset": {"name": item.name,
                                     "digest": item.digest.split(":")[-1][:32],
                                     "source_type": "local", "source": source}})
    return tags, datasets
