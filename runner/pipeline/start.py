"""A pipeline run from the command line (or `reprun.run`) to its end, or a recorded one resumed.

The pipeline run is a run record of its own (``"kind": "pipeline"``) in the run store: its
parameters, its graph and, as they go, each step's run and status. Each step is an ordinary run
whose record names the pipeline run as its ``parent``.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import ParameterError, UsageError
from runner.plan import Opened, RunOptions, open_project
from runner.process import hostname, process_start_ticks
from runner.record.host import host_info
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    PipelineInfo,
    ProjectInfo,
    RunnerProcess,
    RunRecord,
    Status,
    StepInfo,
    now,
)
from runner.redact import redact_url
from runner.source.checkout import release
from runner.spec.pipelines import dependencies
from runner.spec.types import ParamType, Pipeline, check_value

Say = Callable[[str], None]
# The run options a pipeline run records for its resume, besides the source and parameters.
RECORDED_OPTIONS = ("env_manager", "backend", "backend_config", "docker_base_image",
                    "keep_container", "refresh", "allow_drift", "strict", "grace_period")


@dataclasses.dataclass(frozen=True)
class Policy:
    parallel: int = 1
    force: tuple[str, ...] = ()  # step names, or ("all",): run them even if unchanged
    verbose: bool = False  # every message of every step


def pipeline_params(name: str, pipeline: Pipeline, given: Mapping[str, str],
                    cwd: Path) -> dict[str, str]:
    """The pipeline's parameter values: given (-P) or defaults, each checked against its type.
    A path given relative is relative to ``cwd`` (where reprun started); a default's, to the
    project."""
    unknown = [n for n in given if n not in pipeline.parameters]
    if unknown:
        declared = ", ".join(sorted(pipeline.parameters)) or "none"
        raise ParameterError(unknown[0], f"pipeline '{name}' has no such parameter",
                             hint=f"its parameters: {declared}")
    values: dict[str, str] = {}
    for param, decl in pipeline.parameters.items():
        value = given.get(param, decl.default)
        if value is None:
            raise ParameterError(param, f"no value given for the required parameter of "
                                        f"pipeline '{name}'", hint=f"pass -P {param}=VALUE")
        if decl.type is ParamType.PATH and param in given and not Path(value).is_absolute():
            value = str(cwd / value)
        reason = None if decl.type is ParamType.PATH else check_value(decl.type, value,
                                                                       decl.choices)
        if reason is not None:
            raise ParameterError(param, f"{reason} (declared type {decl.type.value})")
        values[param] = value
    return values


def check_force(force: Sequence[str], pipeline: Pipeline) -> tuple[str, ...]:
    unknown = [f for f in force if f != "all" and f not in pipeline.steps]
    if unknown:
        raise UsageError(f"--force {unknown[0]}: the pipeline has no such step",
                         hint=f"give one of: all, {', '.join(pipeline.steps)}")
    return tuple(force)


def run_pipeline(options: RunOptions, opened: Opened, policy: Policy, store: RunStore,
                 say: Say, begun: Callable[[str], None] | None = None) -> RunRecord:
    """Run pipeline ``options.entry_point`` of the opened project; its final record.
    ``begun`` gets the pipeline run's id once its record exists."""
    from runner.pipeline.graph import order
    from runner.pipeline.steps import absolute_config

    name = options.entry_point
    pipeline = opened.project.spec.pipelines[name]
    try:
        if opened.resolving is not None:
            opened.resolving.cancel()
        opened = dataclasses.replace(opened, resolving=None)
        params = pipeline_params(name, pipeline, options.params, options.cwd)
        check_force(policy.force, pipeline)
        options = absolute_config(options)
        needed = dependencies(pipeline)
        steps = [StepInfo(name=s, entry_point=pipeline.steps[s].entry_point, needs=needed[s],
                          parameters=dict(pipeline.steps[s].parameters))
                 for s in order(needed)]
        record = _first_record(opened, options, name, params, steps, policy, store)
        if begun is not None:
            begun(record.run_id)
        return _tracked(opened, options, record, store, policy, say)
    finally:
        release(opened.checkout, options.base_env)


def _tracked(opened: Opened, options: RunOptions, record: RunRecord, store: RunStore,
             policy: Policy, say: Say) -> RunRecord:
    """The steps run; with a tracking server, as the children of the pipeline's MLflow run."""
    from runner.pipeline.driver import Driver

    parent = None
    if options.tracking is not None:
        from runner.pipeline.tracking import PipelineParent
        from runner.record.types import MlflowInfo

        parent = PipelineParent.begin(options.tracking, options.base_env, record, say)
        if parent is not None:
            options = dataclasses.replace(options, tracking=parent.step_options())
            record = record.model_copy(update={"mlflow": MlflowInfo(
                tracking_uri=redact_url(parent.options.uri or ""),
                experiment_id=parent.experiment_id, run_id=parent.run_id)})
            store.save(record)
    final = record
    try:
        final = Driver(opened, options, record, store, policy, say).run()
    finally:
        if parent is not None:
            parent.end(final)
    return final


def resume_pipeline(record: RunRecord, store: RunStore, base_env: Mapping[str, str],
                    say: Say, policy: Policy | None = None) -> RunRecord:
    """Continue a pipeline run that stopped: its FINISHED steps are kept, the others run (each
    reused if a run with the same inputs finished meanwhile)."""
    from runner.pipeline.driver import Driver

    info = record.pipeline
    if record.kind != "pipeline" or info is None:
        raise UsageError(f"run {record.run_id[:8]} is no pipeline run",
                         hint="give the id of a run of 'reprun run URI -e PIPELINE'")
    if record.status is Status.RUNNING:
        raise UsageError(f"pipeline run {record.run_id[:8]} is running",
                         hint="stop it (Ctrl-C) before resuming it")
    if record.status is Status.FINISHED:
        raise UsageError(f"pipeline run {record.run_id[:8]} FINISHED: every step ran",
                         hint=f"see 'reprun runs show {record.run_id[:8]}'")
    given = dict(info.options)
    parallel, force = int(given.pop("parallel", 1)), tuple(given.pop("force", ()))
    policy = policy or Policy(parallel, force)
    options = RunOptions(uri=given.pop("uri"), cwd=Path(given.pop("cwd")), base_env=base_env,
                         entry_point=info.name, version=given.pop("version", None),
                         params=given.pop("params", {}), echo=False, **given)
    opened = open_project(options)
    try:
        if info.name not in opened.project.spec.pipelines:
            raise UsageError(f"the project no longer has pipeline '{info.name}'",
                             hint="run the pipeline it has now with 'reprun run URI -e NAME'")
        resumed = record.model_copy(update={
            "status": Status.RUNNING, "reason": None, "ended_at": None, "duration_s": None,
            "runner": this_process(),
            "pipeline": info.model_copy(update={"resumed": info.resumed + 1})})
        store.save(resumed)
        return Driver(opened, options, resumed, store, policy, say).run()
    finally:
        release(opened.checkout, options.base_env)


def this_process() -> RunnerProcess:
    pid = os.getpid()
    return RunnerProcess(hostname=hostname(), pid=pid, start_ticks=process_start_ticks(pid))


def _recorded(options: RunOptions, policy: Policy) -> dict[str, Any]:
    recorded: dict[str, Any] = {name: getattr(options, name) for name in RECORDED_OPTIONS}
    recorded.update(uri=redact_url(options.uri), cwd=str(options.cwd), version=options.version,
                    params=dict(options.params), parallel=policy.parallel,
                    force=list(policy.force))
    return recorded


def _first_record(opened: Opened, options: RunOptions, name: str, params: dict[str, str],
                  steps: list[StepInfo], policy: Policy, store: RunStore) -> RunRecord:
    """The pipeline run's record, written before any step starts."""
    run_id = uuid.uuid4().hex
    run_dir = store.create_run_dir(run_id)
    output_dir = run_dir / "outputs"
    output_dir.mkdir()
    project = opened.project
    host = host_info()
    record = RunRecord(
        run_id=run_id, status=Status.RUNNING, entry_point=name, parameters=params,
        command="", kind="pipeline", parent=options.parent,
        project=ProjectInfo(uri=opened.checkout.uri, path=str(project.directory),
                            name=project.name,
                            spec_file=str(project.spec_file) if project.spec_file else None),
        source=opened.checkout.facts,
        environment=EnvironmentInfo(kind=project.env.kind, manager=options.env_manager or ""),
        backend=BackendInfo(name=options.backend or "local"),
        host=host, runner=this_process(), output_dir=str(output_dir), started_at=now(),
        pipeline=PipelineInfo(name=name, steps=steps, options=_recorded(options, policy)),
    )
    try:
        store.save(record)
    except BaseException:
        store.discard(run_id)
        raise
    return record
