"""Metrics between a run and its MLflow run: what the project logged, read back into the record
(each value once), and what reprun read itself, sent to MLflow (each value once)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.record.types import MetricSummary, RunRecord
from runner.tracking.mlflow.client import Metric, MlflowClient
from runner.tracking.mlflow.tags import ms


@dataclass
class Readback:
    """The metrics the project logged to its MLflow run, each as (value, step) in order."""

    values: dict[str, list[tuple[float, int]]]
    status: str | None = None


def read_metrics(client: MlflowClient, run_id: str) -> Readback:
    run = client.get_run(run_id)
    keys = [m["key"] for m in run.get("data", {}).get("metrics", [])]
    values: dict[str, list[tuple[float, int]]] = {}
    for key in keys:
        history = sorted(client.metric_history(run_id, key),
                         key=lambda m: (int(m.get("step", 0)), int(m.get("timestamp", 0))))
        values[key] = [(float(m["value"]), int(m.get("step", 0))) for m in history]
    return Readback(values, run.get("info", {}).get("status"))


def own_metrics(run_dir: Path, record: RunRecord, everything: bool = False,
                logged: Readback | None = None) -> list[Metric]:
    """What reprun read itself (files, stream, printed lines): for the MLflow run too; with
    ``everything``, also what was read back from MLflow (to push a past run to a new server).
    A value the project also logged to MLflow itself (in ``logged``) is not sent again."""
    stamp = ms(record.ended_at.timestamp() if record.ended_at else None)
    already = _Multiset(logged.values if logged else {})
    metrics: list[Metric] = []
    for item in _history(run_dir, record):
        if item.get("source") == "mlflow" and not everything:
            continue
        if already.take(item["name"], item["value"], item.get("step")):
            continue
        metrics.append({"key": item["name"], "value": item["value"], "timestamp": stamp,
                        "step": item.get("step") or 0})
    return metrics


def _history(run_dir: Path, record: RunRecord) -> Iterator[dict[str, Any]]:
    """The lines of the run's metrics history, in order."""
    path = run_dir / record.metrics_file if record.metrics_file else None
    if path is None or not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


class _Multiset:
    """Values by (name, value, step), each taken at most as often as it was given; a step
    of None is MLflow's default step 0."""

    def __init__(self, values: Mapping[str, Sequence[tuple[float, int | None]]]) -> None:
        self.counts: Counter[tuple[str, float, int]] = Counter(
            (name, float(v), s or 0) for name, pairs in values.items() for v, s in pairs)

    def take(self, name: str, value: float, step: int | None) -> bool:
        key = (name, float(value), step or 0)
        if self.counts[key] <= 0:
            return False
        self.counts[key] -= 1
        return True


def merged_metrics(record: RunRecord, run_dir: Path, readback: Readback) -> RunRecord:
    """The record with the MLflow values added to its summaries and history (source mlflow).
    A value reprun already read itself (a line the project printed and also logged with
    ``mlflow.log_metric``) is counted once."""
    own: dict[str, list[tuple[float, int | None]]] = {}
    for item in _history(run_dir, record):
        if item.get("source") != "mlflow":
            own.setdefault(item["name"], []).append((item["value"], item.get("step")))
    seen = _Multiset(own)
    summaries = dict(record.metrics)
    lines = []
    for name, logged in readback.values.items():
        values = [(v, s) for v, s in logged if not seen.take(name, v, s)]
        if not values:
            continue
        lines += [json.dumps({"name": name, "value": v, "step": s, "source": "mlflow"}) + "\n"
                  for v, s in values]
        summaries[name] = _summary(summaries.get(name), values)
    if not lines:
        return record
    history_name = record.metrics_file or "metrics.jsonl"
    with (run_dir / history_name).open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
    return record.model_copy(update={"metrics": summaries, "metrics_file": history_name})


def _summary(known: MetricSummary | None, values: list[tuple[float, int]]) -> MetricSummary:
    numbers = [v for v, _s in values]
    last, step = values[-1]
    if known is None:
        return MetricSummary(last=last, step=step, min=min(numbers), max=max(numbers),
                             count=len(values))
    return MetricSummary(last=last, step=step, min=min(known.min, *numbers),
                         max=max(known.max, *numbers), count=known.count + len(values),
                         better=known.better)
