"""The answers of MLflow's REST API (``/api/2.0/mlflow/...``) that the client really calls.

`answer` maps a method and path to a handler; a call not listed is `Unanswered` (the server
answers it 404 with the path and the run's record lists it), never a silent success.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from runner.tracking.mlflow.endpoint import checks
from runner.tracking.mlflow.endpoint.state import ModelState, RunState, State, now_ms, run_id_of

Body = dict[str, Any]
Query = Mapping[str, str]
Handler = Callable[[State, Body, Query], Body]


class Unanswered(Exception):
    """A call reprun does not answer."""


def run_json(state: State, run: RunState) -> Body:
    info: Body = {
        "run_id": run.run_id, "run_uuid": run.run_id,
        "run_name": run.run_name or f"reprun-{run.run_id[:8]}",
        "experiment_id": run.experiment_id, "user_id": run.user_id, "status": run.status,
        "start_time": run.start_time, "lifecycle_stage": "active",
        "artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.run_id}/artifacts",
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    data = {
        "metrics": [{"key": k, "value": proto_number(v), "timestamp": t, "step": s}
                    for k, (v, t, s) in run.last.items()],
        "params": [{"key": k, "value": v} for k, v in run.params.items()],
        "tags": [{"key": k, "value": v} for k, v in run.tags.items()],
    }
    return {"info": info, "data": data, "inputs": {"dataset_inputs": run.inputs},
            "outputs": {"model_outputs": run.models}}


def proto_number(value: float) -> float | str:
    """A double as protobuf's JSON writes it: NaN and the infinities as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def model_json(model: ModelState) -> Body:
    return {"info": {
        "model_id": model.model_id, "experiment_id": model.experiment_id, "name": model.name,
        "creation_timestamp_ms": model.created, "last_updated_timestamp_ms": model.created,
        "artifact_uri": f"mlflow-artifacts:/{model.experiment_id}/models/{model.model_id}"
                        "/artifacts",
        "status": model.status, "model_type": model.model_type,
        "source_run_id": model.source_run_id or "",
        "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
        "params": [{"key": k, "value": v} for k, v in model.params.items()],
    }, "data": {}}


# -- experiments ------------------------------------------------------------------------------

def _get_experiment(state: State, _body: Body, query: Query) -> Body:
    return {"experiment": state.experiment(query.get("experiment_id", ""))}


def _get_by_name(state: State, _body: Body, query: Query) -> Body:
    return {"experiment": state.experiment_by_name(query.get("experiment_name", ""))}


def _create_experiment(state: State, body: Body, _query: Query) -> Body:
    return {"experiment_id": state.create_experiment(checks.text(body, "name") or "")}


def _search_experiments(state: State, _body: Body, _query: Query) -> Body:
    return {"experiments": [state.experiment(i) for i in state.experiments]}


# -- runs ---------------------------------------------------------------------------------------

def _get_run(state: State, _body: Body, query: Query) -> Body:
    return {"run": run_json(state, state.run(query.get("run_id") or query.get("run_uuid")))}


def _create_run(state: State, body: Body, _query: Query) -> Body:
    return {"run": run_json(state, state.create_run(body))}


def _update_run(state: State, body: Body, _query: Query) -> Body:
    run = state.update_run(body)
    info = run_json(state, run)["info"]
    return {"run_info": info}


def _log_parameter(state: State, body: Body, _query: Query) -> Body:
    state.log_param(state.writable(run_id_of(body)), body.get("key"), body.get("value"))
    return {}


def _log_metric(state: State, body: Body, _query: Query) -> Body:
    state.log_metrics(state.writable(run_id_of(body)), [body])
    return {}


def _set_tag(state: State, body: Body, _query: Query) -> Body:
    state.set_tag(state.writable(run_id_of(body)), body.get("key"), body.get("value"))
    return {}


def _delete_tag(state: State, body: Body, _query: Query) -> Body:
    run = state.writable(run_id_of(body))
    name = checks.text(body, "key") or ""
    if name not in run.tags:
        raise checks.not_found(f"No tag with name: {name} in run with id {run.run_id}")
    del run.tags[name]
    return {}


def _log_batch(state: State, body: Body, _query: Query) -> Body:
    run = state.writable(run_id_of(body))
    metrics, params = checks.items(body, "metrics"), checks.items(body, "params")
    tags = checks.items(body, "tags")
    checks.batch_sizes(metrics, params, tags)
    for param in params:
        state.log_param(run, param.get("key"), param.get("value"))
    for tag in tags:
        state.set_tag(run, tag.get("key"), tag.get("value"))
    if metrics:
        state.log_metrics(run, metrics)
    return {}


def _log_inputs(state: State, body: Body, _query: Query) -> Body:
    run = state.writable(run_id_of(body))
    run.inputs.extend(checks.items(body, "datasets"))
    return {}


def _log_outputs(state: State, body: Body, _query: Query) -> Body:
    run = state.writable(run_id_of(body))
    run.models.extend(checks.items(body, "models"))
    return {}


def _log_model(state: State, body: Body, _query: Query) -> Body:
    """MLflow 2's record of a model uploaded under the run's artifacts."""
    import json

    run = state.writable(run_id_of(body))
    try:
        model = json.loads(checks.text(body, "model_json") or "")
    except ValueError:
        raise checks.invalid("Invalid value for parameter 'model_json': not JSON.") from None
    path = model.get("artifact_path") if isinstance(model, dict) else None
    if not isinstance(path, str) or not checks.relative_path_ok(path):
        raise checks.invalid("Invalid value for parameter 'model_json': no artifact_path.")
    state.declared_models.append((run.run_id, path))
    return {}


def _metric_history(state: State, _body: Body, query: Query) -> Body:
    run_id = query.get("run_id") or query.get("run_uuid") or ""
    found = state.history(run_id, query.get("metric_key", ""))
    return {"metrics": [{**m, "value": proto_number(float(m["value"]))} for m in found]}


# -- logged models (MLflow 3) -----------------------------------------------------------------

def _create_model(state: State, body: Body, _query: Query) -> Body:
    return {"model": model_json(state.create_model(body))}


def _get_model(state: State, _body: Body, query: Query) -> Body:
    return {"model": model_json(state.model(query["model_id"]))}


def _finalize_model(state: State, body: Body, query: Query) -> Body:
    model = state.model(query["model_id"])
    status = checks.text(body, "status")
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED",
                      "LOGGED_MODEL_PENDING"):
        raise checks.invalid(f"Invalid value {status!r} for parameter 'status'.")
    model.status = status
    return {"model": model_json(model)}


def _model_tags(state: State, body: Body, query: Query) -> Body:
    model = state.model(query["model_id"])
    for tag in checks.items(body, "tags"):
        model.tags[str(tag.get("key"))] = str(tag.get("value"))
    return {}


def _model_params(state: State, body: Body, query: Query) -> Body:
    model = state.model(query["model_id"])
    for param in checks.items(body, "params"):
        model.params[str(param.get("key"))] = str(param.get("value"))
    return {}


_NAME_FILTER = re.compile(r"^\s*name\s*=\s*'([^']*)'\s*$")


def _search_models(state: State, body: Body, _query: Query) -> Body:
    ids = body.get("experiment_ids") or []
    match = _NAME_FILTER.match(str(body.get("filter") or ""))
    if body.get("filter") and match is None:
        return {"models": []}  # a filter reprun does not evaluate: no model is claimed
    return {"models": [model_json(m) for m in state.models.values()
                       if (not ids or m.experiment_id in ids)
                       and (match is None or m.name == match.group(1))]}


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "experiments/get"): _get_experiment,
    ("GET", "experiments/get-by-name"): _get_by_name,
    ("POST", "experiments/create"): _create_experiment,
    ("POST", "experiments/search"): _search_experiments,
    ("GET", "experiments/search"): _search_experiments,
    ("GET", "runs/get"): _get_run,
    ("POST", "runs/create"): _create_run,
    ("POST", "runs/update"): _update_run,
    ("POST", "runs/log-parameter"): _log_parameter,
    ("POST", "runs/log-metric"): _log_metric,
    ("POST", "runs/set-tag"): _set_tag,
    ("POST", "runs/delete-tag"): _delete_tag,
    ("POST", "runs/log-batch"): _log_batch,
    ("POST", "runs/log-inputs"): _log_inputs,
    ("POST", "runs/outputs"): _log_outputs,
    ("POST", "runs/log-model"): _log_model,
    ("GET", "metrics/get-history"): _metric_history,
    ("POST", "logged-models"): _create_model,
    ("POST", "logged-models/search"): _search_models,
    ("GET", "logged-models/*"): _get_model,
    ("PATCH", "logged-models/*"): _finalize_model,
    ("PATCH", "logged-models/*/tags"): _model_tags,
    ("POST", "logged-models/*/params"): _model_params,
}
_MODEL_PATH = re.compile(r"^logged-models/(m-[0-9a-f]{32})(/tags|/params)?$")


def answer(state: State, method: str, path: str, body: Body, query: Query) -> Body:
    """The answer to ``method`` on ``path`` (below ``/api/2.0/mlflow/``)."""
    handler = ROUTES.get((method, path))
    if handler is None:
        match = _MODEL_PATH.match(path)
        if match is not None and path != "logged-models/search":
            handler = ROUTES.get((method, f"logged-models/*{match.group(2) or ''}"))
            query = {**query, "model_id": match.group(1)}
    if handler is None:
        raise Unanswered(f"{method} {path}")
    with state.lock:
        return handler(state, body, query)


__all__ = ["ROUTES", "Unanswered", "answer", "model_json", "now_ms", "run_json"]
