"""What ``reprun sweep list --json`` and ``sweep show --json`` print, and ``reprun ui``'s
``/api/sweeps`` and ``/api/sweeps/ID`` answer: built here once, so the two faces cannot drift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.record.model import dump
from runner.record.types import Status
from runner.sweep.driver import best_trial, ranked

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.sweep.record import SweepRecord
    from runner.sweep.store import SweepStore


def records(sweeps: SweepStore) -> list[SweepRecord]:
    """Every recorded sweep, reconciled, newest first."""
    return sorted((sweeps.reconcile(sweeps.load(i)) for i in sweeps.ids()),
                  key=lambda r: r.created_at, reverse=True)


def summary_json(record: SweepRecord) -> dict[str, Any]:
    """One line of ``reprun sweep list --json``."""
    best = best_trial(record)
    created = dump(record.created_at, json_values=True)
    return {  # the time written as in the record and 'sweep show --json'
        "sweep_id": record.sweep_id, "status": record.status.value,
        "created_at": created, "mode": record.spec.mode,
        "trials_done": sum(1 for t in record.trials if t.status is Status.FINISHED),
        "trials_total": len(record.trials), "metric": record.spec.metric,
        "goal": record.spec.goal,
        "best": None if best is None or best.value is None else {
            "value": best.value, "trial": best.index, "run_id": best.run_id},
        "project": record.project,
    }


def list_json(sweeps: SweepStore) -> list[dict[str, Any]]:
    """``reprun sweep list --json``: the sweeps, newest first."""
    return [summary_json(r) for r in records(sweeps)]


def reported(store: RunStore, record: SweepRecord) -> dict[str, dict[str, float]]:
    """Run id -> the last value of each metric it reported, from the run index."""
    from runner.tracking.query import parse_where

    where = parse_where(f"sweep = {record.sweep_id}")
    return {s.run_id: dict(s.metrics) for s in store.list(where=where, details=True)}


def ranked_by(record: SweepRecord, metric: str, values: dict[str, dict[str, float]]
              ) -> SweepRecord:
    """The record as if its metric were ``metric`` (``NAME:min|max``; shown, not saved)."""
    from runner.sweep.run import parse_goal

    name, goal = parse_goal(metric, "--metric")
    assert name is not None
    trials = [t.model_copy(update={"value": values.get(t.run_id or "", {}).get(name)})
              for t in record.trials]
    spec = record.spec.model_copy(update={"metric": name, "goal": goal})
    return record.model_copy(update={"spec": spec, "trials": trials})


def show_json(record: SweepRecord) -> dict[str, Any]:
    """``reprun sweep show --json``: the sweep record, its trials ranked best first."""
    data: dict[str, Any] = record.model_dump(mode="json")
    data["trials"] = [t.model_dump(mode="json") for t in ranked(record)]
    return data
