"""The part of a run record that only a pipeline run has: its graph and each step's run."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from runner.frozen import frozen_kw
from runner.record.model import Model
from runner.record.status import Status


@frozen_kw
class StepInfo(Model):
    """One step of a pipeline run: what it runs, what it needs and the run that did it."""

    name: str
    entry_point: str
    needs: list[str] = field(default_factory=list)
    """The steps it waits for (its needs and the steps whose outputs it reads)"""
    parameters: dict[str, str] = field(default_factory=dict)
    """The values as the MLproject writes them ({STEP.outputs}, {name} not yet replaced)"""
    run_id: str | None = None
    """The step's run (the last attempt's)"""
    status: Status | None = None
    """Null until the step starts (and for a step not run because a step it needs failed)"""
    reused_from: str | None = None
    """The run whose outputs the step took instead of running"""
    reason: str | None = None
    attempts: list[str] = field(default_factory=list)
    """Earlier runs of this step (failed or interrupted, then resumed)"""


@frozen_kw
class PipelineInfo(Model):
    """A pipeline run: which pipeline, how it was asked for, and its steps."""

    name: str
    steps: list[StepInfo]
    """In an order that runs each step after the steps it needs"""
    options: dict[str, Any] = field(default_factory=dict)
    """What a resume needs: uri, cwd, version, params, parallel, force and the run options"""
    resumed: int = 0
    """How many times 'reprun pipeline resume' continued it"""
