"""Past runs and a tracking server: ``reprun runs sync`` (what a run could not send) and
``reprun runs push`` (a run recorded without tracking, sent as a new MLflow run)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from runner.errors import TrackingError, UsageError
from runner.record.store import RunStore
from runner.record.types import RunRecord
from runner.tracking.mlflow.client import MlflowClient
from runner.tracking.mlflow.readback import Readback, merged_metrics, own_metrics
from runner.tracking.mlflow.settings import TrackingOptions, is_server
from runner.tracking.mlflow.sink import (
    PENDING_FILE,
    Notify,
    Op,
    Session,
    apply,
    artifacts,
    finish_ops,
    start,
)
from runner.tracking.mlflow.tags import environment_tags, mlflow_params, ms


def pending_operations(run_dir: Path) -> list[Op]:
    path = run_dir / PENDING_FILE
    if not path.is_file():
        return []
    try:
        ops = json.loads(path.read_text(encoding="utf-8"))["operations"]
    except (ValueError, KeyError, TypeError):
        raise TrackingError(f"{path} is not a pending-sync file reprun wrote") from None
    return [op for op in ops if isinstance(op, dict) and "op" in op]


def sync_run(store: RunStore, record: RunRecord, env: Mapping[str, str], uri: str | None,
             notify: Notify) -> tuple[RunRecord, int]:
    """Send what the run kept pending, in order; (the record, calls sent).
    Stops at the first failure, which is raised after what was sent is saved."""
    run_dir = store.run_dir(record.run_id)
    ops = pending_operations(run_dir)
    if not ops:
        return record, 0
    if record.mlflow is None:
        raise TrackingError(f"run {record.run_id[:8]} has pending calls but no tracking server")
    server = uri or record.mlflow.tracking_uri
    session = Session(MlflowClient(server, env), run_dir, notify,
                      experiment_id=record.mlflow.experiment_id, run_id=record.mlflow.run_id)
    sent = 0
    try:
        while ops:
            if ops[0]["op"] == "finish":  # a detached run, now ended
                record, ops[:1] = _finish_detached(session, ops[0], record, store)
                continue
            record = _apply(session, ops[0], record, store)
            ops.pop(0)
            sent += 1
    finally:
        session.pending = ops
        session.warned = True
        session.save_pending()
    return record, sent


def _finish_detached(session: Session, op: Op, record: RunRecord,
                     store: RunStore) -> tuple[RunRecord, list[Op]]:
    """Read back what the project logged (kept in the record), then the calls that end the
    MLflow run without sending those values again."""
    if not record.status.done:
        raise TrackingError(f"run {record.run_id[:8]} is still {record.status.value}",
                            hint="sync it again once it has ended")
    logged = apply(session, {"op": "read_metrics"})
    if isinstance(logged, Readback):
        record = merged_metrics(record, session.run_dir, logged)
        store.save(record)
    else:
        logged = None
    return record, finish_ops(record, session.run_dir, bool(op.get("log_outputs")), logged)


def _apply(session: Session, op: Op, record: RunRecord, store: RunStore) -> RunRecord:
    try:
        result = apply(session, op)
    except TrackingError as exc:
        if exc.status == 400 and exc.code == "INVALID_PARAMETER_VALUE":
            session.notify(f"warning: mlflow: {exc.render()}; not sent")
            return record
        raise
    if op["op"] == "create_run":
        record = record.model_copy(update={"mlflow": session.info})
        store.save(record)
    elif isinstance(result, Readback):
        record = merged_metrics(record, session.run_dir, result)
        store.save(record)
    return record


def push_run(store: RunStore, record: RunRecord, options: TrackingOptions,
             env: Mapping[str, str], notify: Notify) -> RunRecord:
    """A recorded run sent to the server as a new MLflow run: tags, parameters, metrics, files,
    status. What fails is kept for 'runs sync', as for a live run."""
    if options.uri is None or not is_server(options.uri):
        raise UsageError("runs push needs a tracking server (http[s]://...)",
                         hint="pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if not record.status.done:
        raise UsageError(f"run {record.run_id[:8]} is still {record.status.value}",
                         hint="push it once it has ended")
    run_dir = store.run_dir(record.run_id)
    if record.mlflow is not None and pending_operations(run_dir):
        raise UsageError(f"run {record.run_id[:8]} has calls pending for "
                         f"{record.mlflow.tracking_uri}", hint="send them with 'reprun runs sync'")
    if record.mlflow is not None and record.mlflow.run_id and \
            record.mlflow.tracking_uri == MlflowClient(options.uri, env).shown:
        raise UsageError(f"run {record.run_id[:8]} is already MLflow run "
                         f"{record.mlflow.run_id} on {record.mlflow.tracking_uri}")
    session = start(record, options, options.uri, env, run_dir, notify,
                    mlflow_params(record.parameters))
    session.do({"op": "log_batch", "tags": environment_tags(record)})
    metrics = own_metrics(run_dir, record, everything=True)
    if metrics:
        session.do({"op": "log_batch", "metrics": metrics})
    record = record.model_copy(update={"mlflow": session.info})
    store.save(record)
    for file, path in artifacts(record, run_dir, options.log_outputs):
        session.do({"op": "upload", "file": file, "path": path})
    from runner.tracking.mlflow.endpoint.push import captured_ops

    for op in captured_ops(record, run_dir):  # what the project logged with no server
        session.do(op)
    end = record.ended_at.timestamp() if record.ended_at else None
    session.do({"op": "end", "status": record.status.value, "end_ms": ms(end)})
    session.save_pending()
    return record


__all__ = ["pending_operations", "push_run", "sync_run"]
