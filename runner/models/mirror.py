"""The registry on an MLflow tracking server, kept in step with reprun's (``--tracking-uri``).

``register`` makes the registered model (if new) and a version whose source is an MLflow run's
artifact: the version's files are uploaded under ``reprun-models/NAME/vN`` of the MLflow run that
tracked the reprun run (or of a new run in the default experiment, tagged with the reprun run, for
a run that was not tracked there). ``alias`` sets or deletes the alias on the server's version.
What the server answered (its version number, or why it failed) is kept in the version file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runner.errors import TrackingError, UsageError
from runner.models.store import ModelStore
from runner.models.types import MlflowVersion, ModelVersion
from runner.record.types import RunRecord
from runner.tracking.mlflow import MlflowClient, TrackingOptions, ms

DEFAULT_EXPERIMENT = "0"


def mirror_version(store: ModelStore, version: ModelVersion, record: RunRecord,
                   tracking: TrackingOptions, env: Mapping[str, str]) -> ModelVersion:
    """The version made on the server; the outcome saved in the version file either way."""
    assert tracking.uri is not None
    client = MlflowClient(tracking.uri, env)
    try:
        number = _create(client, store, version, record)
        mirrored = MlflowVersion(tracking_uri=client.shown, version=number)
    except TrackingError as exc:
        mirrored = MlflowVersion(tracking_uri=client.shown, error=exc.message)
        _save(store, version.model_copy(update={"mlflow": mirrored}))
        raise
    finally:
        client.close()
    updated = version.model_copy(update={"mlflow": mirrored})
    _save(store, updated)
    return updated


def _create(client: MlflowClient, store: ModelStore, version: ModelVersion,
            record: RunRecord) -> str:
    try:
        client.call("POST", "registered-models/create", {"name": version.name})
    except TrackingError as exc:
        if exc.code != "RESOURCE_ALREADY_EXISTS":
            raise
    run_id, artifact_uri = _artifact_run(client, record, version)
    folder = f"reprun-models/{version.name}/v{version.version}"
    for entry in version.files:
        client.upload(artifact_uri, f"{folder}/{entry.path}", store.blob(entry.digest))
    source = f"{artifact_uri.rstrip('/')}/{folder}"
    if version.kind == "file":
        source += f"/{version.files[0].path}"
    tags = [{"key": "reprun.run_id", "value": version.run_id},
            {"key": "reprun.digest", "value": version.digest},
            {"key": "reprun.version", "value": str(version.version)}]
    body = {"name": version.name, "source": source, "run_id": run_id, "tags": tags}
    if version.description:
        body["description"] = version.description
    made = client.call("POST", "model-versions/create", body)
    return str(made["model_version"]["version"])


def _artifact_run(client: MlflowClient, record: RunRecord,
                  version: ModelVersion) -> tuple[str, str]:
    """The MLflow run (id, artifact URI) whose artifacts hold the version's files."""
    tracked = record.mlflow
    if tracked is not None and tracked.run_id and tracked.tracking_uri == client.shown:
        info = client.get_run(tracked.run_id)["info"]
        return tracked.run_id, str(info["artifact_uri"])
    tags = [("reprun.run_id", record.run_id), ("mlflow.runName",
                                                f"reprun model {version.name} v{version.version}")]
    info = client.create_run(DEFAULT_EXPERIMENT, tags, ms(record.started_at.timestamp()))
    client.update_run(info["run_id"], "FINISHED",
                      ms(record.ended_at.timestamp() if record.ended_at else None))
    return str(info["run_id"]), str(info["artifact_uri"])


def mirror_alias(store: ModelStore, name: str, alias: str, version: int | None,
                 tracking: TrackingOptions, env: Mapping[str, str]) -> None:
    """The alias set (or deleted) on the server's copy of the version."""
    assert tracking.uri is not None
    client = MlflowClient(tracking.uri, env)
    try:
        if version is None:
            client.call("DELETE", "registered-models/alias", {"name": name, "alias": alias})
            return
        mirrored = store.version(name, version).mlflow
        if mirrored is None or mirrored.version is None:
            raise UsageError(f"{name} version {version} is not on {client.shown}",
                             hint="register it with --tracking-uri first")
        client.call("POST", "registered-models/alias",
                    {"name": name, "alias": alias, "version": mirrored.version})
    finally:
        client.close()


def _save(store: ModelStore, version: ModelVersion) -> None:
    with store.writing("the MLflow version was not noted"), store.locked(version.name):
        current = store.version(version.name, version.version)
        store.write_version(current.model_copy(update={"mlflow": version.mlflow}), new=False)


def push_versions(store: ModelStore, record: RunRecord, tracking: TrackingOptions,
                  env: Mapping[str, str], notify: Callable[[str], None]) -> int:
    """``runs push``: the versions registered from ``record`` (just pushed) made on the server
    too, unless they are there already; returns how many could not be."""
    assert tracking.uri is not None
    client = MlflowClient(tracking.uri, env)
    shown = client.shown
    client.close()
    failed = 0
    for ref in store.versions_from_runs([record.run_id]).get(record.run_id, []):
        name, _, number = ref.partition("@")
        if not number.isdigit() or int(number) not in store.versions(name):
            continue
        version = store.version(name, int(number))
        there = version.mlflow
        if there is not None and there.version and there.tracking_uri == shown:
            continue
        try:
            mirrored = mirror_version(store, version, record, tracking, env).mlflow
        except TrackingError as exc:
            notify(f"warning: {name} version {number} is not on {shown}: {exc.render()}")
            failed += 1
            continue
        notify(f"{name} version {number}: MLflow version {mirrored.version if mirrored else '-'}")
    return failed
