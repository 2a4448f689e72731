"""A run's capture: the endpoint started for its command, and what it got, put in its record."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.record.captured import CapturedMlflow, CapturedModel, CapturedRun, ParamConflict
from runner.record.types import RunRecord
from runner.tracking.mlflow.endpoint.server import Endpoint
from runner.tracking.mlflow.endpoint.state import HISTORY_FILE, ModelState, RunState, State

Notify = Callable[[str], None]
SWITCH = "REPRUN_MLFLOW_CAPTURE"  # "off": no endpoint (the project's MLflow does as it likes)
MLMODEL = "MLmodel"


def wanted(env: Mapping[str, str]) -> bool:
    """Whether capture is on (it is unless ``REPRUN_MLFLOW_CAPTURE=off``)."""
    return env.get(SWITCH, "").strip().lower() not in ("off", "0", "no", "false")


class Capture:
    """The endpoint of one run, from before its command starts until it has ended."""

    def __init__(self, state: State, endpoint: Endpoint, token: str, notify: Notify) -> None:
        self.state, self.endpoint, self.token, self.notify = state, endpoint, token, notify
        self.stopped = False

    @classmethod
    def begin(cls, record: RunRecord, run_dir: Path, experiment_name: str | None,
              run_name: str | None, notify: Notify) -> Capture:
        state = State(record.run_id, run_dir, Path(record.output_dir), experiment_name, run_name)
        token = secrets.token_urlsafe(24)
        endpoint = Endpoint(state, token, notify)
        endpoint.start()
        return cls(state, endpoint, token, notify)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.endpoint.port}"

    def child_env(self) -> dict[str, str]:
        """What the command's MLflow client needs to log into this run."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_TOKEN": self.token,
                "MLFLOW_RUN_ID": self.state.run_id,
                "MLFLOW_EXPERIMENT_ID": self.state.experiment_id,
                "REPRUN_MLFLOW_ENDPOINT": "1"}  # for a backend: the URI is on this loopback

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.endpoint.stop()

    # The calls a run makes on its tracking (as on `runner.tracking.mlflow.Tracker`).

    def recorded(self, record: RunRecord) -> RunRecord:
        """The record as the command starts: nothing to add yet."""
        return record

    def detached(self, record: RunRecord) -> None:
        """A detached run gets no capture (`begin_for`); nothing to do."""

    def finish(self, record: RunRecord) -> None:
        """The run has ended (or reprun failed): the endpoint is stopped."""
        self.stop()

    def read_back(self, record: RunRecord) -> RunRecord:
        """``record`` with what the project logged; unchanged when it logged nothing."""
        self.stop()
        return with_captured(record, self.state, self.notify)


def with_captured(record: RunRecord, state: State, notify: Notify) -> RunRecord:
    """``record`` with what ``state`` holds (the endpoint's, or a pod's store read back)."""
    if not _used(state):
        return record
    main = state.runs[state.run_id]
    output_dir = Path(record.output_dir)
    captured = CapturedMlflow(
        experiment_id=main.experiment_id,
        experiment_name=state.experiments[main.experiment_id],
        run_name=main.run_name, status=None if main.status == "RUNNING" else main.status,
        params=dict(main.params), conflicts=_conflicts(record.parameters, main.params),
        tags=dict(main.tags), artifacts=_folder(main.artifacts, output_dir),
        history_file=HISTORY_FILE if state.points else None,
        metric_points=state.points, models=_models(state, output_dir, notify),
        children=[_child(r, output_dir) for r in state.runs.values()
                  if r.run_id != state.run_id],
        refused=list(state.refused), unanswered=list(state.unanswered),
    )
    for conflict in captured.conflicts:
        notify(f"warning: mlflow: the project logged {conflict.name}={conflict.logged!r}, "
               f"but the run was given {conflict.name}={conflict.declared!r}")
    return record.model_copy(update={"captured": captured})


def _used(state: State) -> bool:
    main = state.runs[state.run_id]
    return bool(len(state.runs) > 1 or state.models or state.points or main.params
                or main.tags or main.status != "RUNNING" or state.refused or state.unanswered
                or main.artifacts.exists())


def _folder(path: Path, output_dir: Path) -> str | None:
    return path.relative_to(output_dir).as_posix() if path.is_dir() else None


def _conflicts(declared: Mapping[str, str], logged: Mapping[str, str]) -> list[ParamConflict]:
    return [ParamConflict(name=n, declared=declared[n], logged=v) for n, v in logged.items()
            if n in declared and not _same(declared[n], v)]


def _same(declared: str, logged: str) -> bool:
    if declared == logged:
        return True
    try:
        return float(declared) == float(logged)
    except ValueError:
        return False


def _child(run: RunState, output_dir: Path) -> CapturedRun:
    return CapturedRun(run_id=run.run_id, run_name=run.run_name, status=run.status,
                       parent_run_id=run.tags.get("mlflow.parentRunId"),
                       params=dict(run.params), tags=dict(run.tags),
                       metrics={k: v for k, (v, _t, _s) in run.last.items()},
                       artifacts=_folder(run.artifacts, output_dir))


def _models(state: State, output_dir: Path, notify: Notify) -> list[CapturedModel]:
    """The logged models (MLflow 3), and any other folder with an MLmodel (MLflow 2's
    ``log_model``, or a model saved and logged as artifacts)."""
    by_folder = {m.folder: m for m in state.models.values()}
    folders = list(by_folder)
    root = state.root
    if root.is_dir():
        folders += [p.parent for p in sorted(root.rglob(MLMODEL))
                    if p.is_file() and p.parent not in by_folder]
    return [_model(f, by_folder.get(f), state, output_dir, notify) for f in folders]


def _model(folder: Path, logged: ModelState | None, state: State, output_dir: Path,
           notify: Notify) -> CapturedModel:
    facts = _mlmodel(folder / MLMODEL, notify)
    flavors = facts.get("flavors")
    signature = facts.get("signature")
    artifact_path = facts.get("artifact_path")
    name = logged.name if logged else folder.name
    run_id = logged.source_run_id if logged else _run_of(folder, state) or facts.get("run_id")
    return CapturedModel(
        name=name, path=folder.relative_to(output_dir).as_posix(),
        model_id=logged.model_id if logged else None, run_id=run_id,
        status=logged.status if logged else None,
        flavors=sorted(flavors) if isinstance(flavors, dict) else [],
        signature=signature if isinstance(signature, dict) else None,
        artifact_path=str(artifact_path) if artifact_path is not None else None)


def _run_of(folder: Path, state: State) -> str | None:
    for run in state.runs.values():
        if folder.is_relative_to(run.artifacts):
            return run.run_id
    return None


def _mlmodel(path: Path, notify: Notify) -> dict[str, Any]:
    """The MLmodel file's mapping (YAML), or {} with a warning when it cannot be read."""
    if not path.is_file():
        return {}
    import yaml  # only for a run that logged a model

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        notify(f"warning: mlflow: {path.name} of a logged model is unreadable: "
               f"{' '.join(str(exc).split())[:200]}")
        return {}
    return data if isinstance(data, dict) else {}


def begin_for(record: RunRecord, run_dir: Path, *, remote: bool, detach: bool,
              tracking: Any, env: Mapping[str, str], notify: Notify) -> Capture | None:
    """The capture of a run that names no tracking URI and runs on this machine or in a
    container here (a detached or remote run outlives reprun's process: it gets no endpoint;
    a Kubernetes pod logs into a store read back with its outputs, ``podstore``)."""
    if remote or detach or not wanted(env):
        return None
    if tracking is not None and getattr(tracking, "uri", None):
        return None
    return Capture.begin(record, run_dir, getattr(tracking, "experiment_name", None),
                         getattr(tracking, "run_name", None), notify)
