"""A reprun run as an MLflow run on a tracking server, as ``mlflow run`` makes it.

At the start reprun creates the MLflow run with the tags ``mlflow run`` sets, logs the parameters
as ``mlflow run`` logs them (shell-quoted) and adds its own tags (``reprun.*``); the command gets
``MLFLOW_RUN_ID``, ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_ID``, so that the project's own
``mlflow.start_run()`` joins that run. At the end reprun reads back the metrics the project logged,
uploads the record, the lock, the patch and the log (and the outputs with ``--log-outputs``)
through the server's artifact proxy, and sets the run's status unless the project ended the run.

The run never depends on the server: a call that fails is kept in a pending file beside the
record (``mlflow-pending.json``), one warning line says so, and ``reprun runs sync`` sends what is
pending later. Once the server failed, later calls of the same run are not tried (a dead server
costs one timeout, not one per call).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import TrackingError
from runner.fsutil import atomic_write_text
from runner.record.types import MlflowInfo, RunRecord
from runner.tracking.mlflow.client import (
    TERMINAL,
    MlflowClient,
    Pair,
)
from runner.tracking.mlflow.readback import (
    Readback,
    merged_metrics,
    own_metrics,
    read_metrics,
)
from runner.tracking.mlflow.settings import CREDENTIAL_VARIABLES, URI_VARIABLE, TrackingOptions
from runner.tracking.mlflow.tags import (
    environment_tags,
    input_logging,
    mlflow_tags,
    ms,
)

PENDING_FILE = "mlflow-pending.json"
ARTIFACT_DIR = "reprun"
OUTPUTS_ARTIFACT_DIR = "outputs"
# Which MLflow run statuses reprun's end as (MLflow itself leaves a Ctrl-C run FAILED).
Notify = Callable[[str], None]
Op = dict[str, Any]


# -- what mlflow run records ---------------------------------------------------------------------


# -- the session of one run ----------------------------------------------------------------------

@dataclass
class Session:
    """The MLflow side of one run: its client, what was created, and what is pending."""

    client: MlflowClient
    run_dir: Path
    notify: Notify
    experiment_id: str | None = None
    run_id: str | None = None
    artifact_uri: str | None = None
    pending: list[Op] = field(default_factory=list)
    failure: str | None = None
    warned: bool = False
    run_status: str | None = None

    @property
    def info(self) -> MlflowInfo:
        url = self.client.run_url(self.experiment_id, self.run_id) \
            if self.experiment_id and self.run_id else None
        return MlflowInfo(tracking_uri=self.client.shown, experiment_id=self.experiment_id,
                          run_id=self.run_id, run_url=url)

    def child_env(self, uri: str) -> dict[str, str]:
        """What the command gets so that ``mlflow.start_run()`` joins this run."""
        env = {URI_VARIABLE: uri}
        if self.run_id:
            env["MLFLOW_RUN_ID"] = self.run_id
        if self.experiment_id:
            env["MLFLOW_EXPERIMENT_ID"] = self.experiment_id
        return env

    def do_together(self, ops: Sequence[Op]) -> None:
        """Independent calls (uploads) at once, each on a connection of its own; those that
        fail are kept, in order, as ``do`` keeps them."""
        if self.failure is not None or len(ops) < 2 or self.run_id is None:
            for op in ops:
                self.do(op)
            return
        if self.artifact_uri is None:
            self.do({"op": "artifact_uri"})

        def one(op: Op) -> TrackingError | None:
            twin = copy.copy(self)
            twin.client = self.client.twin()
            try:
                apply(twin, op)
            except TrackingError as exc:
                return exc
            finally:
                twin.client.close()
            return None

        with ThreadPoolExecutor(max_workers=min(4, len(ops))) as pool:
            errors = list(pool.map(one, ops))
        for op, error in zip(ops, errors, strict=True):
            if error is not None:
                self._failed(op, error)

    def _failed(self, op: Op, exc: TrackingError) -> None:
        if exc.status == 400 and exc.code == "INVALID_PARAMETER_VALUE":
            self.notify(f"warning: mlflow: {exc.render()}; not sent")
            return
        self.failure = self.failure or exc.render()
        self.pending.append(op)

    def do(self, op: Op) -> Any:
        """Carry out ``op`` now, or keep it for ``runs sync`` if the server failed (once)."""
        if self.failure is not None:
            self.pending.append(op)
            return None
        try:
            return apply(self, op)
        except TrackingError as exc:
            self._failed(op, exc)
            return None

    def save_pending(self, quiet: bool = False) -> None:
        path = self.run_dir / PENDING_FILE
        if not self.pending:
            path.unlink(missing_ok=True)
            return
        atomic_write_text(path, json.dumps({"tracking_uri": self.client.shown,
                                            "operations": self.pending}, indent=1))
        if not self.warned and not quiet:
            self.warned = True
            self.notify(f"warning: mlflow: {self.failure}; kept {len(self.pending)} "
                        "pending call(s); send them later with 'reprun runs sync'")


def apply(session: Session, op: Op) -> Any:
    """One operation against the server; ``session`` learns the run id when the run is made."""
    client, kind = session.client, op["op"]
    if kind == "create_run":
        experiment = op.get("experiment_id") or client.experiment_id(op["experiment_name"])[0]
        info = client.create_run(experiment, [tuple(t) for t in op["tags"]], op["start_ms"],
                                 op.get("run_name"))
        session.experiment_id, session.run_id = str(info["experiment_id"]), info["run_id"]
        session.artifact_uri = info.get("artifact_uri")
        return info
    run_id = session.run_id
    if run_id is None:
        raise TrackingError("the MLflow run was not created")
    if kind == "log_batch":
        client.log_batch(run_id, [tuple(p) for p in op.get("params", [])], op.get("metrics", []),
                         [tuple(t) for t in op.get("tags", [])])
    elif kind == "log_inputs":
        client.log_inputs(run_id, op["datasets"])
    elif kind == "artifact_uri":
        session.artifact_uri = client.get_run(run_id)["info"]["artifact_uri"]
    elif kind == "upload":
        if session.artifact_uri is None:
            session.artifact_uri = client.get_run(run_id)["info"]["artifact_uri"]
        file = session.run_dir / op["file"]
        if file.is_file():
            client.upload(session.artifact_uri, op["path"], file)
    elif kind == "read_metrics":
        readback = read_metrics(client, run_id)
        session.run_status = readback.status
        return readback
    elif kind == "end":
        # The status read back with the metrics still holds: the command has ended.
        status = session.run_status or client.get_run(run_id)["info"].get("status")
        if status not in TERMINAL:  # the project may have ended the run itself
            client.update_run(run_id, op["status"], op["end_ms"])
    else:
        raise TrackingError(f"unknown pending operation {kind!r}")
    return None


def start(record: RunRecord, options: TrackingOptions, uri: str, env: Mapping[str, str],
          run_dir: Path, notify: Notify, params: Sequence[Pair]) -> Session:
    """Create the MLflow run (or keep its creation pending): tags, then parameters."""
    session = Session(MlflowClient(uri, env), run_dir, notify)
    tags = mlflow_tags(record, options.run_name, options.parent_run_id)
    if record.sweep is not None:
        tags += [("reprun.sweep_id", record.sweep.id), ("reprun.trial", str(record.sweep.trial))]
    if options.reproduces:
        tags.append(("reprun.reproduces.mlflow_run_id", options.reproduces))
    create: Op = {"op": "create_run", "tags": tags,
                  "start_ms": ms(record.started_at.timestamp()), "run_name": options.run_name}
    if options.experiment_name and not options.experiment_id:
        create["experiment_name"] = options.experiment_name
    else:
        create["experiment_id"] = options.experiment_id or "0"  # "0": the Default experiment
    session.do(create)
    input_tags, datasets = input_logging(record)
    if params or input_tags:
        session.do({"op": "log_batch", "params": list(params), "tags": input_tags})
    if datasets:
        session.do({"op": "log_inputs", "datasets": datasets})
    return session


def detached(session: Session, record: RunRecord, log_outputs: bool) -> None:
    """A run that goes on without reprun: its MLflow run is ended by 'reprun runs sync' once
    the run has ended (a pending 'finish')."""
    session.do({"op": "log_batch", "tags": environment_tags(record)})
    session.pending.append({"op": "finish", "log_outputs": log_outputs})
    session.save_pending(quiet=True)
    session.notify("mlflow: the run goes on detached; 'reprun runs sync' ends its MLflow run "
                   "once it has ended")


def read_back(session: Session) -> Readback | None:
    if session.run_id is None:
        return None
    result = session.do({"op": "read_metrics"})
    return result if isinstance(result, Readback) else None


def finish(session: Session, record: RunRecord, log_outputs: bool,
           logged: Readback | None = None) -> None:
    """Send the tags known at the end, reprun's own metrics and files, then end the run; keep
    what could not be sent."""
    ops = finish_ops(record, session.run_dir, log_outputs, logged)
    session.do(ops[0])
    session.do_together(ops[1:-1])
    session.do(ops[-1])
    session.save_pending()


def finish_ops(record: RunRecord, run_dir: Path, log_outputs: bool,
               logged: Readback | None = None) -> list[Op]:
    """What ends an MLflow run: one batch (backend and image tags, the metrics reprun read
    itself that the project did not log already), the files, the status."""
    ops: list[Op] = [{"op": "log_batch", "tags": environment_tags(record),
                      "metrics": own_metrics(run_dir, record, logged=logged)}]
    ops += [{"op": "upload", "file": file, "path": path}
            for file, path in artifacts(record, run_dir, log_outputs)]
    status = record.status.value if record.status.done else "FAILED"
    end = record.ended_at.timestamp() if record.ended_at else None
    ops.append({"op": "end", "status": status, "end_ms": ms(end)})
    return ops


def artifacts(record: RunRecord, run_dir: Path, log_outputs: bool) -> Iterator[tuple[str, str]]:
    """(file relative to the run's directory, artifact path): record, lock, patch, log,
    metrics history, and the outputs when asked."""
    names = ["run.json", record.environment.lock_file, record.source.patch_file,
             record.log_file, record.metrics_file]
    for name in names:
        if name and (run_dir / name).is_file():
            yield name, f"{ARTIFACT_DIR}/{name}"
    if log_outputs:
        output_dir = Path(record.output_dir)
        for output in record.outputs:
            file = output_dir / output.path
            relative = file.relative_to(run_dir).as_posix() if file.is_relative_to(run_dir) \
                else None
            if relative is not None:
                yield relative, f"{OUTPUTS_ARTIFACT_DIR}/{output.path}"




def credential_names(env: Mapping[str, str]) -> tuple[str, ...]:
    """The MLflow credential variables set here, to pass on to a container (names only)."""
    return tuple(n for n in CREDENTIAL_VARIABLES if env.get(n) and not n.endswith("CERT_PATH"))


# -- one run of reprun, from start to end ------------------------------------------------------

class Tracker:
    """What ``runner.execute`` calls, in order: ``begin``, ``child_env``, then ``read_back``
    and ``finish`` (or ``detached``). No call raises: the run never depends on the server."""

    def __init__(self, options: TrackingOptions, uri: str, starting: threading.Thread,
                 started: list[Session]) -> None:
        self.options = options
        self.uri = uri
        self._starting = starting
        self._started = started
        self._logged: Readback | None = None

    @property
    def session(self) -> Session | None:
        """The session, once the run is created (or its creation kept pending)."""
        self._starting.join()
        return self._started[0] if self._started else None

    @classmethod
    def begin(cls, record: RunRecord, options: TrackingOptions, uri: str,
              env: Mapping[str, str], run_dir: Path, notify: Notify,
              params: Sequence[Pair]) -> Tracker | None:
        """Start creating the MLflow run; it goes on while the environment is built."""
        started: list[Session] = []

        def create() -> None:
            try:
                session = start(record, options, uri, env, run_dir, notify, params)
            except TrackingError as exc:  # unusable settings (a certificate file missing...)
                notify(f"warning: mlflow: {exc.render()}; the run is not tracked")
                return
            if session.failure is not None:
                notify(f"warning: mlflow: {session.failure}; the run goes on, its MLflow run "
                       "is made later by 'reprun runs sync'")
                session.warned = True
            started.append(session)

        starting = threading.Thread(target=create, name="reprun-mlflow-start", daemon=True)
        starting.start()
        return cls(options, uri, starting, started)

    def recorded(self, record: RunRecord) -> RunRecord:
        session = self.session
        return record if session is None else record.model_copy(update={"mlflow": session.info})

    def child_env(self) -> dict[str, str]:
        session = self.session
        if session is None:
            return {}
        return session.child_env(self.uri)

    def detached(self, record: RunRecord) -> None:
        if self.session is not None:
            detached(self.session, record, self.options.log_outputs)

    def read_back(self, record: RunRecord) -> RunRecord:
        session = self.session
        readback = read_back(session) if session is not None else None
        if session is None or readback is None:
            return record
        self._logged = readback
        try:
            return merged_metrics(record, session.run_dir, readback)
        except OSError as exc:
            session.notify(f"warning: mlflow: metrics not recorded: {exc}")
            return record

    def finish(self, record: RunRecord) -> None:
        session = self.session
        if session is None:
            return
        try:
            finish(session, record, self.options.log_outputs, self._logged)
        except OSError as exc:
            session.notify(f"warning: mlflow: {exc}")
        finally:
            session.client.close()
