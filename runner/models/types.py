"""A registered model version (``models/<name>/versions/<n>.json``) and a model's state.

As in the run record (`runner.record.types`), these are frozen standard-library dataclasses that
pydantic validates: the JSON Schema in ``schemas/`` is generated from them through a pydantic
``TypeAdapter`` (a field's docstring is its description), while reprun writes and reads them with
the standard library (`from_json`), so that ``models list`` and ``models show`` stay fast.

A version keeps its own lineage (what the run was made of, copied when it was registered), so it
still says how it was made after its run is deleted; its files are kept by content in the store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from runner.frozen import frozen_kw
from runner.record.model import MODEL_CONFIG, Model

SCHEMA_VERSION = 1
T = TypeVar("T")


@frozen_kw
class ModelFile(Model):
    """One file of a version, kept in the store by its content."""

    path: str
    """Relative to the version's folder (for a one-file model: its name)"""
    size: int
    digest: str
    """blake3:<hex>; the file is kept in the store's blobs under this digest"""


@frozen_kw
class MlflowModel(Model):
    """What the MLmodel file of an MLflow-format model says."""

    flavors: list[str]
    """The flavors it can be loaded with, e.g. python_function, sklearn"""
    signature: dict[str, str] | None = None
    """The model's signature as MLmodel writes it (inputs and outputs as JSON text)"""
    python_env: str | None = None
    """The environment file MLflow wrote with the model, if any"""


@frozen_kw
class InputLineage(Model):
    """Data the run read, and the runs whose outputs it came from."""

    name: str
    digest: str | None = None
    produced_by: list[str] = field(default_factory=list)
    """Run ids of earlier runs that wrote it"""


@frozen_kw
class Lineage(Model):
    """How the version was made: the run, its code, its environment and its data."""

    run_id: str
    project: str
    entry_point: str
    parameters: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    """The commit the run ran"""
    dirty: bool | None = None
    """Whether it had uncommitted changes (kept as a patch beside the run's record)"""
    patch_sha256: str | None = None
    snapshot_sha256: str | None = None
    """For a project outside git: the sha256 of the run's source snapshot"""
    env_manager: str | None = None
    lock_file: str | None = None
    lock_sha256: str | None = None
    python_version: str | None = None
    python_executable: str | None = None
    """The interpreter of the run's environment"""
    backend: str | None = None
    inputs: list[InputLineage] = field(default_factory=list)


@frozen_kw
class MlflowVersion(Model):
    """The same version in the model registry of an MLflow tracking server."""

    tracking_uri: str
    version: str | None = None
    """The version number the server gave; null while it could not be created"""
    error: str | None = None
    """Why the server has no such version yet"""


@frozen_kw
class ModelVersion(Model):
    """One version of a registered model: the files, the run that made them and how."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {**MODEL_CONFIG,
                                                      "title": "reprun model version"}

    schema_version: int = SCHEMA_VERSION
    name: str
    version: int
    created_at: datetime
    created_by: str
    """user@host"""
    run_id: str
    """The run it was registered from"""
    runs: list[str] = field(default_factory=list)
    """Every run that made these very files (the first is run_id)"""
    path: str = ""
    """The file or folder registered, relative to the run's output directory ('' for all)"""
    kind: str = "directory"
    """'file' or 'directory'"""
    digest: str
    """blake3 of the file, or of the folder's manifest (the digest of runner.tracking.digest)"""
    size: int
    files: list[ModelFile] = field(default_factory=list)
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    """The last value of each metric the run reported"""
    mlflow_model: MlflowModel | None = None
    lineage: Lineage
    mlflow: MlflowVersion | None = None


@frozen_kw
class AliasMove(Model):
    """One change of an alias: a line of ``alias-history.jsonl``."""

    alias: str
    version: int | None
    """The version it points to now; null when it was deleted"""
    previous: int | None = None
    """The version it pointed to before"""
    by: str
    """user@host"""
    at: datetime


def from_json(cls: type[T], data: Any) -> T:
    """An instance of dataclass ``cls`` from its JSON dump, without pydantic (files reprun wrote;
    a file another tool broke raises KeyError, TypeError or ValueError)."""
    kwargs: dict[str, Any] = {}
    nested = _NESTED.get(cls, {})
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value = data[f.name]
        kind = nested.get(f.name)
        if kind is datetime:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif isinstance(kind, list):
            value = [from_json(kind[0], item) for item in value]
        elif kind is not None and value is not None:
            value = from_json(kind, value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    return cls(**kwargs)


_NESTED: dict[type[Any], dict[str, Any]] = {
    Lineage: {"inputs": [InputLineage]},
    ModelVersion: {"created_at": datetime, "files": [ModelFile], "mlflow_model": MlflowModel,
                   "lineage": Lineage, "mlflow": MlflowVersion},
    AliasMove: {"at": datetime},
}
