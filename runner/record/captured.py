"""What a project's own MLflow logging sent to reprun when no tracking server was named
(``runner.tracking.mlflow.endpoint``): part of the run record (``RunRecord.captured``)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from runner.frozen import frozen_kw
from runner.record.model import Model


@frozen_kw
class ParamConflict(Model):
    """A parameter the project logged with another value than the one the run declared."""

    name: str
    declared: str
    """The value of the MLproject parameter the run was given"""
    logged: str
    """The value the project logged with ``mlflow.log_param``"""


@frozen_kw
class CapturedModel(Model):
    """A model the project logged (``mlflow.<flavor>.log_model``): a folder with an MLmodel file."""

    name: str
    """The name (MLflow 3) or artifact path (MLflow 2) it was logged under"""
    path: str
    """Its folder, relative to the run's output directory"""
    model_id: str | None = None
    """The MLflow 3 logged-model id (``m-...``); null for an MLflow 2 model"""
    run_id: str | None = None
    """The MLflow run it was logged from"""
    status: str | None = None
    """The status the client set (``LOGGED_MODEL_READY`` once uploaded)"""
    flavors: list[str] = field(default_factory=list)
    """The flavors its MLmodel names (``python_function``, ``sklearn``...)"""
    signature: dict[str, Any] | None = None
    """The MLmodel's signature (its inputs/outputs, as MLflow writes them), if any"""
    artifact_path: str | None = None
    """The ``artifact_path`` its MLmodel gives"""


@frozen_kw
class CapturedRun(Model):
    """A run the project created in the run (``mlflow.start_run(nested=True)``)."""

    run_id: str
    run_name: str | None = None
    status: str | None = None
    parent_run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    """The last value of each metric it logged (its history: ``history_file``)"""
    artifacts: str | None = None
    """Its artifacts' folder, relative to the output directory, if it logged any"""


@frozen_kw
class CapturedMlflow(Model):
    """The project's MLflow logging, answered by reprun itself (no tracking server named).

    Its metrics are the run's ``metrics`` (source ``mlflow``); its artifacts and models are
    outputs of the run, with digests like any other."""

    experiment_id: str
    experiment_name: str
    run_name: str | None = None
    """The run name the project set (``start_run(run_name=...)`` or the ``mlflow.runName`` tag)"""
    status: str | None = None
    """The status the project's client gave the run (FINISHED, FAILED), if it ended it"""
    params: dict[str, str] = field(default_factory=dict)
    """Parameters logged by the project; the declared ones stay in the record's ``parameters``"""
    conflicts: list[ParamConflict] = field(default_factory=list)
    """Logged parameters whose value contradicts the declared one"""
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: str | None = None
    """The run's artifacts' folder, relative to the output directory, if it logged any"""
    history_file: str | None = None
    """Every metric point logged (run id, name, value, step, timestamp), beside the record"""
    metric_points: int = 0
    models: list[CapturedModel] = field(default_factory=list)
    children: list[CapturedRun] = field(default_factory=list)
    """Nested runs the project created"""
    refused: list[str] = field(default_factory=list)
    """Requests answered with an error (the first few): bad keys, limits, logging too late"""
    unanswered: list[str] = field(default_factory=list)
    """Calls of the client reprun does not answer (answered 404): data may be missing"""


def shown_lines(captured: CapturedMlflow | None) -> list[tuple[str, str]]:
    """``reprun runs show``'s lines of what the project logged with MLflow (none if nothing)."""
    if captured is None:
        return []
    logged = [f"{len(captured.params)} param(s)", f"{len(captured.tags)} tag(s)",
              f"{captured.metric_points} metric point(s)"]
    if captured.children:
        logged.append(f"{len(captured.children)} nested run(s)")
    lines = [("mlflow", "logged to reprun (no server): " + ", ".join(logged))]
    lines += [("model", f"{m.name} ({', '.join(m.flavors) or 'no flavor'}) in {m.path}")
              for m in captured.models]
    if captured.conflicts:
        lines.append(("conflicts", ", ".join(f"{c.name} given {c.declared}, logged {c.logged}"
                                             for c in captured.conflicts)))
    if captured.unanswered:
        lines.append(("unanswered", ", ".join(captured.unanswered)))
    return lines
