"""Registering a run's output as the next version of a model.

What is registered: ``RUN:PATH`` names a file or folder of the run's output directory; without a
PATH, the one MLflow model the run wrote (a folder holding an ``MLmodel`` file), else all of its
outputs. The files are read again and must still have the digests the record gives them (so a
version is what the run made), and nothing may lead out of the output directory. They are copied
into the store by content first; the version file is written last, under the model's lock.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from runner.errors import UsageError
from runner.frozen import frozen
from runner.models.names import check_name, shown
from runner.models.store import ModelStore
from runner.models.types import (
    InputLineage,
    Lineage,
    MlflowModel,
    ModelFile,
    ModelVersion,
)
from runner.process import hostname
from runner.record.types import RunRecord, Status, now
from runner.tracking.digest import ManifestEntry, file_digest, manifest_digest

MLMODEL = "MLmodel"


@frozen
class Made:
    """A version's content, before it has a number."""

    path: str
    kind: str
    digest: str
    size: int
    files: tuple[ModelFile, ...]
    sources: tuple[Path, ...]  # the run's file of each of ``files``


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{hostname()}"


def mlflow_models(record: RunRecord) -> list[str]:
    """The folders of the run's outputs that hold an MLmodel file (an MLflow model)."""
    folders = {str(PurePosixPath(o.path).parent) for o in record.outputs
               if PurePosixPath(o.path).name == MLMODEL}
    return sorted("" if f == "." else f for f in folders)


def default_path(record: RunRecord) -> str:
    found = mlflow_models(record)
    if len(found) > 1:
        raise UsageError(f"run {record.run_id[:8]} wrote {len(found)} MLflow models "
                         f"({', '.join(found)})",
                         hint=f"name one: RUN:PATH, e.g. {record.run_id[:8]}:{found[0]}")
    return found[0] if found else ""


def collect(record: RunRecord, path: str | None) -> Made:
    """The files to register from ``record`` (``path``: relative to its output directory)."""
    if record.status is not Status.FINISHED:
        raise UsageError(f"run {record.run_id[:8]} is {record.status.value}, not FINISHED: only "
                         "a finished run's outputs can be registered",
                         hint="register a run that finished ('reprun runs list --where "
                              "\"status = FINISHED\"')")
    rel = default_path(record) if path is None else _relative(path)
    outputs = Path(record.output_dir)
    root = outputs.resolve()
    target = outputs / rel if rel else outputs
    recorded = {o.path: o for o in record.outputs}
    _inside(target, root, rel or ".", record)
    if not target.exists():
        raise UsageError(f"run {record.run_id[:8]} has no output '{rel}'",
                         hint=_outputs_hint(record))
    if target.is_file():
        files = [(target, rel)]
        kind = "file"
    else:
        files = [(p, p.relative_to(outputs).as_posix()) for p in sorted(target.rglob("*"))
                 if p.is_file() or p.is_symlink()]
        kind = "directory"
    if not files:
        raise UsageError(f"run {record.run_id[:8]} has no files under '{rel or '.'}'",
                         hint=_outputs_hint(record))
    entries, sources = [], []
    for file, run_rel in files:
        _inside(file, root, run_rel, record)
        out = recorded.get(run_rel)
        digest = file_digest(file)
        if out is None or out.content != digest:
            what = "is not among its recorded outputs" if out is None else (
                "has changed since the run recorded it")
            raise UsageError(f"'{run_rel}' of run {record.run_id[:8]} {what}",
                             hint="register the outputs as the run made them")
        name = PurePosixPath(run_rel).name if kind == "file" else (
            PurePosixPath(run_rel).relative_to(rel).as_posix() if rel else run_rel)
        entries.append(ModelFile(path=name, size=out.size, digest=digest))
        sources.append(file)
    digest = entries[0].digest if kind == "file" else manifest_digest(
        [ManifestEntry(e.path, e.size, e.digest) for e in entries])
    return Made(rel, kind, digest, sum(e.size for e in entries), tuple(entries), tuple(sources))


def _relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or any(
            ord(c) < 32 for c in path):
        raise UsageError(f"path '{shown(path)}' is not a relative path inside the run's output "
                         "directory", hint="write it as the run lists it, e.g. RUN:model")
    return pure.as_posix().strip("/") if pure.parts else ""


def _inside(path: Path, root: Path, rel: str, record: RunRecord) -> None:
    """UsageError when ``path`` (or a link on the way) leads out of the output directory."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path
    if resolved != root and root not in resolved.parents:
        raise UsageError(f"'{shown(rel)}' of run {record.run_id[:8]} leads out of its output "
                         "directory (a symbolic link)", hint="register files the run wrote")


def _outputs_hint(record: RunRecord) -> str:
    shown_paths = ", ".join(o.path for o in record.outputs[:5]) or "none"
    return f"its outputs: {shown_paths} (see 'reprun runs show {record.run_id[:8]}')"


def lineage(record: RunRecord) -> Lineage:
    source, env = record.source, record.environment
    return Lineage(
        run_id=record.run_id, project=record.project.name, entry_point=record.entry_point,
        parameters=dict(record.parameters), commit=source.resolved_commit or source.git_commit,
        dirty=source.git_dirty, patch_sha256=source.patch_sha256,
        snapshot_sha256=source.snapshot.sha256 if source.snapshot else None,
        env_manager=env.manager, lock_file=env.lock_file, lock_sha256=env.lock_sha256,
        python_version=env.python_version, python_executable=env.python_executable,
        backend=record.backend.name,
        inputs=[InputLineage(name=i.name, digest=i.digest,
                             produced_by=list(dict.fromkeys(p.run_id for p in i.produced_by)))
                for i in record.inputs],
    )


def mlflow_model(made: Made) -> MlflowModel | None:
    """What the MLmodel file at the folder's top says, if there is one."""
    for entry, source in zip(made.files, made.sources, strict=True):
        if entry.path == MLMODEL:
            return read_mlmodel(source)
    return None


def read_mlmodel(path: Path) -> MlflowModel | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    flavors = data.get("flavors")
    signature = data.get("signature")
    env = flavors.get("python_function", {}).get("env") if isinstance(flavors, dict) else None
    python_env = env.get("virtualenv") if isinstance(env, dict) else env
    return MlflowModel(
        flavors=sorted(str(f) for f in flavors) if isinstance(flavors, dict) else [],
        signature={str(k): str(v) for k, v in signature.items() if v is not None}
        if isinstance(signature, dict) else None,
        python_env=str(python_env) if isinstance(python_env, str) else None,
    )


def register(store: ModelStore, name: str, record: RunRecord, path: str | None,
             description: str | None = None, tags: Mapping[str, str] | None = None,
             same_as_latest: bool = False) -> tuple[ModelVersion, bool]:
    """Register; returns the version and whether it is new (``same_as_latest``: files equal to
    the latest version's add the run to that version instead)."""
    check_name(name)
    made = collect(record, path)
    # A blob is whole or absent (written aside, then renamed); one left by a version that could
    # not be written is not half of anything, and another register may be using it already.
    with store.writing("no version was registered"):
        for entry, source in zip(made.files, made.sources, strict=True):
            store.add_blob(source, entry.digest)
        with store.locked(name):
            return _write(store, name, record, made, description, tags, same_as_latest)


def _write(store: ModelStore, name: str, record: RunRecord, made: Made, description: str | None,
           tags: Mapping[str, str] | None, same_as_latest: bool) -> tuple[ModelVersion, bool]:
    number = store.next_version(name)
    if same_as_latest and number > 1:
        latest = store.version(name, number - 1)
        if latest.digest == made.digest:
            if record.run_id in latest.runs:
                return latest, False
            again = latest.model_copy(update={"runs": [*latest.runs, record.run_id]})
            store.write_version(again, new=False)
            return again, False
    version = ModelVersion(
        name=name, version=number, created_at=now(), created_by=who(), run_id=record.run_id,
        runs=[record.run_id], path=made.path, kind=made.kind, digest=made.digest,
        size=made.size, files=list(made.files), description=description,
        tags=dict(tags or {}), metrics={k: m.last for k, m in record.metrics.items()},
        mlflow_model=mlflow_model(made), lineage=lineage(record),
    )
    store.write_version(version, new=True)
    return version, True
