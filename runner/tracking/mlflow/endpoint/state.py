"""What the project's MLflow client logged into its reprun run, kept while the run goes on.

One `State` per run, shared by the endpoint's request threads (every method takes its lock).
The run reprun made has reprun's run id; runs the project creates (nested ones, or a second
``start_run()``) are kept too. Metric points are written as they come: every point to the
history file (run, name, value, step, timestamp), and the points of reprun's run to the metrics
stream reprun reads at the end (``runner.tracking.metrics``), so they become the run's metrics.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runner.tracking.mlflow.endpoint import checks
from runner.tracking.mlflow.endpoint.checks import ApiError, invalid, not_found

HISTORY_FILE = "mlflow-metrics.jsonl"
STREAM_NAME = "mlflow.jsonl"  # beside REPRUN_METRICS' file, read with it
ARTIFACTS = "mlflow"  # under the output directory: artifacts/, runs/<id>/, models/<name>/
ACTIVE = ("RUNNING", "SCHEDULED")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunState:
    run_id: str
    experiment_id: str
    artifacts: Path
    run_name: str | None = None
    user_id: str = ""
    status: str = "RUNNING"
    start_time: int = field(default_factory=now_ms)
    end_time: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    last: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelState:
    model_id: str
    experiment_id: str
    name: str
    folder: Path
    source_run_id: str | None
    created: int = field(default_factory=now_ms)
    status: str = "LOGGED_MODEL_PENDING"
    model_type: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class State:
    """Experiments, runs and models of one reprun run; what the endpoint answers from."""

    def __init__(self, run_id: str, run_dir: Path, output_dir: Path,
                 experiment_name: str | None, run_name: str | None) -> None:
        self.lock = threading.Lock()
        self.run_id = run_id
        self.run_dir, self.output_dir = run_dir, output_dir
        self.root = output_dir / ARTIFACTS
        self.experiments = {"0": "Default"}
        self.experiment_id = "0"
        if experiment_name and experiment_name != "Default":
            self.experiments["1"] = experiment_name
            self.experiment_id = "1"
        self.runs: dict[str, RunState] = {}
        self.runs[run_id] = RunState(run_id, self.experiment_id, self.root / "artifacts",
                                     run_name=run_name)
        self.models: dict[str, ModelState] = {}
        self.points = 0
        self.closed = False
        self.refused: list[str] = []
        self.unanswered: list[str] = []
        self.declared_models: list[tuple[str, str]] = []  # MLflow 2: (run id, artifact path)
        self._history: IO[str] | None = None
        self._stream: IO[str] | None = None

    # -- experiments --------------------------------------------------------------------------

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        name = self.experiments.get(experiment_id)
        if name is None:
            raise not_found(f"No Experiment with id={experiment_id} exists")
        return {"experiment_id": experiment_id, "name": name, "lifecycle_stage": "active",
                "artifact_location": f"mlflow-artifacts:/{experiment_id}", "tags": []}

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        for experiment_id, known in self.experiments.items():
            if known == name:
                return self.experiment(experiment_id)
        raise not_found(f"Could not find experiment with name '{name}'")

    def create_experiment(self, name: str) -> str:
        if not name:
            raise invalid("Invalid experiment name: ''")
        if name in self.experiments.values():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS",
                           f"Experiment '{name}' already exists.")
        experiment_id = str(max(int(i) for i in self.experiments) + 1)
        self.experiments[experiment_id] = name
        return experiment_id

    # -- runs ---------------------------------------------------------------------------------

    def run(self, run_id: str | None) -> RunState:
        run = self.runs.get(run_id or "")
        if run is None:
            raise not_found(f"Run '{run_id}' not found")
        return run

    def writable(self, run_id: str | None) -> RunState:
        """A run that may be logged to: reprun's run must still be going."""
        if self.closed:
            raise ApiError(400, "INVALID_STATE", f"The run {self.run_id} has ended: reprun "
                           "records nothing logged after its command exited.")
        return self.run(run_id)

    def create_run(self, body: dict[str, Any]) -> RunState:
        experiment_id = checks.text(body, "experiment_id", required=False) or "0"
        self.experiment(experiment_id)
        run_id = uuid.uuid4().hex
        directory = self.root / "runs" / run_id / "artifacts"
        run = RunState(run_id, experiment_id, directory,
                       user_id=checks.text(body, "user_id", required=False) or "")
        if self.closed:
            self.writable(run_id)
        start = body.get("start_time")
        run.start_time = start if isinstance(start, int) and not isinstance(start, bool) \
            else now_ms()
        for tag in checks.items(body, "tags"):
            name = checks.key(tag.get("key"), "tag")
            run.tags[name] = checks.tag_value(name, tag.get("value"))
        run.run_name = (checks.text(body, "run_name", required=False)
                        or run.tags.get("mlflow.runName") or f"nested-{len(self.runs)}")
        run.tags["mlflow.runName"] = run.run_name
        self.runs[run_id] = run
        return run

    def update_run(self, body: dict[str, Any]) -> RunState:
        run = self.writable(run_id_of(body))
        status = checks.text(body, "status", required=False)
        if status is not None:
            if status not in ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"):
                raise invalid(f"Invalid value {status!r} for parameter 'status'.")
            run.status = status
        end = body.get("end_time")
        if isinstance(end, int) and not isinstance(end, bool):
            run.end_time = end
        name = checks.text(body, "run_name", required=False)
        if name:
            run.run_name = name
            run.tags["mlflow.runName"] = name
        return run

    def log_param(self, run: RunState, name: Any, value: Any) -> None:
        name = checks.key(name, "param")
        value = checks.param_value(name, value)
        old = run.params.get(name)
        if old is not None and old != value:
            raise invalid(f"Changing param values is not allowed. Param with key='{name}' was "
                          f"already logged with value='{old}' for run ID='{run.run_id}'. "
                          f"Attempted logging new value '{value}'.")
        run.params[name] = value

    def set_tag(self, run: RunState, name: Any, value: Any) -> None:
        name = checks.key(name, "tag")
        run.tags[name] = checks.tag_value(name, value)
        if name == "mlflow.runName":
            run.run_name = run.tags[name]

    def log_metrics(self, run: RunState, items: list[dict[str, Any]]) -> None:
        """Points, all checked before any is kept (a refused batch keeps nothing)."""
        points = [checks.metric(item) for item in items]
        linked = [p for p, item in zip(points, items, strict=True) if item.get("model_id")]
        if linked:  # MLflow 3 links a run's metrics to a model it logs by logging them again
            known = self._known(run.run_id, {p[0] for p in linked})
            points = [p for p in points if (p[0], _json_number(p[1]), p[3], p[2]) not in known]
        if self.points + len(points) > checks.MAX_POINTS:
            raise ApiError(400, "RESOURCE_LIMIT_EXCEEDED", f"reprun keeps at most "
                           f"{checks.MAX_POINTS} metric points per run; this run logged "
                           f"{self.points}.")
        self.points += len(points)
        history, stream = self._files()
        lines = []
        for name, value, timestamp, step in points:
            shown = _json_number(value)
            lines.append(f'{{"run": "{run.run_id}", "name": {json.dumps(name)}, "value": '
                         f'{shown}, "step": {step}, "timestamp": {timestamp}}}\n')
            old = run.last.get(name)
            if old is None or (step, timestamp) >= (old[2], old[1]):
                run.last[name] = (value, timestamp, step)
        history.write("".join(lines))
        if run.run_id == self.run_id:
            stream.write("".join(
                f'{{"name": {json.dumps(n)}, "value": {_json_number(v)}, "step": '
                f'{s if s >= 0 else "null"}, "timestamp": {t}}}\n' for n, v, t, s in points))
        self.flush()  # reprun reads the stream once the command has ended

    def _known(self, run_id: str, names: set[str]) -> set[tuple[str, str, int, int]]:
        """The points of ``run_id`` named ``names`` already logged: (name, value, step, time)."""
        found = set()
        for name in names:
            for point in self.history(run_id, name):
                value = float(point["value"])
                found.add((name, _json_number(value), point["step"], point["timestamp"]))
        return found

    def history(self, run_id: str, name: str) -> list[dict[str, Any]]:
        self.run(run_id)
        self.flush()
        path = self.run_dir / HISTORY_FILE
        if not path.is_file():
            return []
        found = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)
                if item["run"] == run_id and item["name"] == name:
                    found.append({"key": name, "value": item["value"],
                                  "timestamp": item["timestamp"], "step": item["step"]})
        return found

    # -- models -------------------------------------------------------------------------------

    def create_model(self, body: dict[str, Any]) -> ModelState:
        experiment_id = checks.text(body, "experiment_id") or "0"
        self.experiment(experiment_id)
        if self.closed:
            self.writable(self.run_id)
        name = checks.text(body, "name", required=False) or "model"
        model_id = f"m-{uuid.uuid4().hex}"
        model = ModelState(model_id, experiment_id, name, self._model_folder(name, model_id),
                           checks.text(body, "source_run_id", required=False),
                           model_type=checks.text(body, "model_type", required=False) or "")
        for tag in checks.items(body, "tags"):
            model.tags[str(tag.get("key"))] = str(tag.get("value"))
        for param in checks.items(body, "params"):
            model.params[str(param.get("key"))] = str(param.get("value"))
        self.models[model_id] = model
        return model

    def model(self, model_id: str) -> ModelState:
        model = self.models.get(model_id)
        if model is None:
            raise not_found(f"Logged model with ID '{model_id}' not found.")
        return model

    def _model_folder(self, name: str, model_id: str) -> Path:
        """models/<name>, or models/<name>-<id> when that name is taken or is no plain name."""
        plain = name if checks.relative_path_ok(name) and "/" not in name else model_id
        taken = {m.folder for m in self.models.values()}
        folder = self.root / "models" / plain
        return folder if folder not in taken else folder.with_name(f"{plain}-{model_id[2:10]}")

    # -- files --------------------------------------------------------------------------------

    def _files(self) -> tuple[IO[str], IO[str]]:
        if self._history is None or self._stream is None:
            self._history = (self.run_dir / HISTORY_FILE).open("a", encoding="utf-8")
            stream_dir = self.run_dir / "stream"
            stream_dir.mkdir(exist_ok=True)
            self._stream = (stream_dir / STREAM_NAME).open("a", encoding="utf-8")
        return self._history, self._stream

    def flush(self) -> None:
        for handle in (self._history, self._stream):
            if handle is not None:
                handle.flush()

    def close(self) -> None:
        self.closed = True
        for handle in (self._history, self._stream):
            if handle is not None:
                handle.close()
        self._history = self._stream = None

    def refuse(self, where: str, error: ApiError) -> None:
        if len(self.refused) < 20:
            self.refused.append(f"{where}: {error.code}: {error.message}")


def _json_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def run_id_of(body: dict[str, Any]) -> str | None:
    """The run a request names (``run_id``, or the older ``run_uuid``)."""
    value = body.get("run_id") or body.get("run_uuid")
    return value if isinstance(value, str) else None
