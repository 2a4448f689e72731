"""The record of a sweep: what was asked (spec), the trials it made and how each one ended.

``sweeps/<id>/sweep.json`` under REPRUN_HOME, replaced atomically as trials start and end, so that
``reprun sweep resume`` and a later reader know exactly what was asked and what is left. The
types are frozen dataclasses validated by pydantic, as the run record's (`runner.record.model`).
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import Any, ClassVar, Literal

from runner.frozen import frozen_kw
from runner.record.model import MODEL_CONFIG, Model
from runner.record.types import RunnerProcess, Status

SWEEP_SCHEMA_VERSION = 1
Mode = Literal["grid", "random", "optimize"]
Goal = Literal["min", "max"]


@frozen_kw
class SweepSpec(Model):
    """What 'reprun sweep' was asked, enough to run the sweep again or resume it."""

    uri: str
    """The project as given, credentials removed"""
    cwd: str
    """Where reprun was started: relative paths and URIs are relative to it"""
    entry_point: str = "main"
    version: str | None = None
    params: list[str] = field(default_factory=list)
    """The -P options exactly as given (NAME=SPEC)"""
    mode: Mode = "grid"
    seed: int
    """The seed of random draws (grid caps, --random, --optimize)"""
    trials: int | None = None
    """--random N or --trials N"""
    max_trials: int | None = None
    """--max-trials: at most this many trials of a grid"""
    metric: str | None = None
    """The metric trials are ranked (and optimized) by, without 'metrics.'"""
    goal: Goal = "min"
    parallel: int = 1
    max_failures: int | None = None
    """Stop starting trials once this many failed (--fail-fast: 1)"""
    options: dict[str, Any] = field(default_factory=dict)
    """The run options every trial gets (env manager, backend, backend config, reuse, ...)"""


@frozen_kw
class TrialInfo(Model):
    """One trial: its parameter values and, once started, its run."""

    index: int
    params: dict[str, str]
    """The values this trial gives to the swept parameters"""
    run_id: str | None = None
    """The run of the trial's last attempt"""
    status: Status | None = None
    """Null until the trial starts"""
    reason: str | None = None
    value: float | None = None
    """The sweep's metric as the run reported it (its last value)"""
    attempts: list[str] = field(default_factory=list)
    """Earlier runs of this trial (interrupted or failed, then resumed)"""


@frozen_kw
class SweepRecord(Model):
    """A sweep: many runs of one project over a grid, a random sample or a search."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {**MODEL_CONFIG,
                                                      "title": "reprun sweep record"}

    schema_version: int = SWEEP_SCHEMA_VERSION
    sweep_id: str
    status: Status
    """RUNNING while trials run; FINISHED when every trial did; FAILED; KILLED (interrupted,
    resumable)"""
    reason: str | None = None
    spec: SweepSpec
    project: str
    """The project's name"""
    trials: list[TrialInfo] = field(default_factory=list)
    created_at: datetime
    ended_at: datetime | None = None
    mlflow_run_id: str | None = None
    """The parent MLflow run of the trials, when tracking was on"""
    resumed: int = 0
    """How many times 'reprun sweep resume' continued it"""
    runner: RunnerProcess | None = None
    """The reprun process running the sweep (null once it ended)"""
