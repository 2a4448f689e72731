"""A sweep from the command line to its end: plan once, expand and check the trials, record the
sweep, run the trials (`runner.sweep.driver`); or resume a recorded one."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.errors import Interrupted, UsageError
from runner.frozen import frozen
from runner.plan import Plan, RunOptions, make_plan, release_plan
from runner.record.store import RunStore
from runner.record.types import Status, now
from runner.redact import redact_url
from runner.sweep.driver import Driver, ListSource, Policy, TrialSource, this_process
from runner.sweep.record import Goal, Mode, SweepRecord, SweepSpec, TrialInfo
from runner.sweep.spec import axes_for, check_trials, expand, probe
from runner.sweep.store import SweepStore, new_sweep_id

Say = Callable[[str], None]
# The run options a sweep records (and a resume gives its trials again), besides the source.
RECORDED_OPTIONS = ("env_manager", "backend", "backend_config", "docker_base_image",
                    "keep_container", "conda_channels", "refresh", "allow_drift", "reuse",
                    "strict", "grace_period")


@frozen
class SweepRequest:
    """What ``reprun sweep`` was asked."""

    options: RunOptions  # every trial's options; ``params`` is ignored (see ``specs``)
    specs: Mapping[str, str]  # name -> SPEC, as given
    mode: Mode = "grid"
    count: int | None = None  # --random N, --trials N
    max_trials: int | None = None
    seed: int | None = None
    metric: str | None = None
    goal: Goal = "min"
    parallel: int = 1
    max_failures: int | None = None


def metric_name(text: str) -> str:
    """``metrics.rmse`` or ``rmse`` -> ``rmse``."""
    name = text.removeprefix("metrics.")
    if not name:
        raise UsageError(f"no metric name in '{text}'", hint="write metrics.rmse:min")
    return name


def parse_goal(text: str, option: str) -> tuple[str | None, Goal]:
    """``metrics.rmse:min`` -> (``rmse``, ``min``)."""
    name, _, goal = text.rpartition(":")
    if goal not in ("min", "max") or not name:
        raise UsageError(f"{option} {text}: say which way is better",
                         hint=f"write {option} metrics.{name or text}:min (or :max)")
    return metric_name(name), "min" if goal == "min" else "max"


def prepare(request: SweepRequest) -> tuple[Plan, SweepRecord]:
    """The plan every trial starts from and the sweep's record with its trials (not saved).

    Raises the first user error: the project, a malformed SPEC, a value its parameter's type
    refuses. The caller releases the plan (`runner.plan.release_plan`)."""
    options = dataclasses.replace(request.options, params=probe(request.specs),
                                  resolve_early=False, echo=False, progress_live=False)
    plan = make_plan(options)
    try:
        seed = request.seed if request.seed is not None else random.SystemRandom().randrange(
            2**31)
        axes = axes_for(plan.entry, request.specs)
        trials = expand(axes, request.mode, request.count, request.max_trials, seed)
        check_trials(plan.entry, trials, options.cwd)
        if request.mode == "optimize":
            from runner.sweep.search import check_space

            check_space(axes)
    except BaseException:
        release_plan(plan)
        raise
    metric, goal = request.metric, request.goal
    if metric is None:  # the one metric the entry point says which way is better
        declared = plan.entry.metrics.better if plan.entry.metrics else {}
        if len(declared) == 1:
            metric, goal = next(iter(declared.items()))
    spec = SweepSpec(
        uri=redact_url(options.uri), cwd=str(options.cwd), entry_point=options.entry_point,
        version=options.version, params=[f"{n}={s}" for n, s in request.specs.items()],
        mode=request.mode, seed=seed, trials=request.count, max_trials=request.max_trials,
        metric=metric, goal=goal, parallel=request.parallel,
        max_failures=request.max_failures, options=recorded_options(options),
    )
    record = SweepRecord(
        sweep_id=new_sweep_id(), status=Status.RUNNING, spec=spec, project=plan.project.name,
        trials=[TrialInfo(index=i, params=t) for i, t in enumerate(trials)],
        created_at=now(),
    )
    return plan, record


def recorded_options(options: RunOptions) -> dict[str, Any]:
    recorded: dict[str, Any] = {name: getattr(options, name) for name in RECORDED_OPTIONS}
    recorded["conda_channels"] = list(options.conda_channels)
    tracking = options.tracking
    if tracking is not None:
        fields = dataclasses.asdict(tracking)
        fields["uri"] = redact_url(tracking.uri) if tracking.uri else None
        recorded["tracking"] = fields
    return recorded


def run_sweep(plan: Plan, record: SweepRecord, runs: RunStore, sweeps: SweepStore,
              say: Say, indexes: list[int] | None = None, verbose: bool = False,
              live: bool = False) -> SweepRecord:
    """Run the trials ``indexes`` (default: all) of a recorded sweep; its final record."""
    from runner.sweep.tracking import Parent

    spec = record.spec
    record = record.model_copy(update={"status": Status.RUNNING, "runner": this_process()})
    sweeps.save(record)  # a sweep killed from now on shows KILLED, and resumes
    plan = _with_environment(plan, record, sweeps, say)
    parent = Parent.begin(plan.options.tracking, plan.options.base_env, record, say)
    if parent is not None:
        record = record.model_copy(update={"mlflow_run_id": parent.run_id})
        plan = dataclasses.replace(plan, options=dataclasses.replace(
            plan.options, tracking=parent.trial_options()))
    source: TrialSource
    if spec.mode == "optimize":
        from runner.sweep.search import SearchSource

        source = SearchSource.open(record, sweeps.directory(record.sweep_id), plan.entry)
    else:
        pending = [t.index for t in record.trials if t.status is not Status.FINISHED]
        source = ListSource(pending if indexes is None else indexes)
    driver = Driver(plan, record, sweeps, runs, source,
                    Policy(spec.parallel, spec.max_failures, verbose, live), say)
    final = record
    try:
        final = driver.run()
    finally:
        if parent is not None:
            parent.end(driver.record if final is record else final)
    return final


def _with_environment(plan: Plan, record: SweepRecord, sweeps: SweepStore, say: Say) -> Plan:
    """The environment resolved and built once, before the first trial; a sweep that cannot
    build it fails (an interrupted one is KILLED, and resumable)."""
    from runner.environment import prepare_environment
    from runner.execute import _describe

    try:
        return prepare_environment(plan, say)
    except BaseException as exc:
        stopped = isinstance(exc, (KeyboardInterrupt, Interrupted))
        sweeps.save(record.model_copy(update={
            "status": Status.KILLED if stopped else Status.FAILED, "ended_at": now(),
            "runner": None,
            "reason": "interrupted while building the environment" if stopped else
            f"the environment could not be built: {_describe(exc)}"}))
        raise


def resume_options(record: SweepRecord, base_env: Mapping[str, str], reuse: bool) -> RunOptions:
    """The run options of a recorded sweep's trials, in this process's environment."""
    spec = record.spec
    given = dict(spec.options)
    tracking = given.pop("tracking", None)
    tracking_options = None
    if tracking is not None:
        from runner.tracking.mlflow import TrackingOptions

        uri = base_env.get("MLFLOW_TRACKING_URI") if tracking.get("uri") is None else None
        tracking_options = TrackingOptions(**{**tracking, **({"uri": uri} if uri else {})})
    given["conda_channels"] = tuple(given.get("conda_channels", ()))
    if reuse:
        given["reuse"] = True
    return RunOptions(uri=spec.uri, cwd=Path(spec.cwd), base_env=base_env,
                      entry_point=spec.entry_point, version=spec.version, echo=False,
                      tracking=tracking_options, **given)


def resumable(record: SweepRecord) -> list[int]:
    """The trials a resume runs: those that did not finish."""
    if record.status is Status.RUNNING and record.runner is not None:
        raise UsageError(f"sweep {record.sweep_id} is running (reprun process "
                         f"{record.runner.pid} on {record.runner.hostname})",
                         hint="stop it (Ctrl-C) before resuming it")
    if record.status is Status.FINISHED:
        raise UsageError(f"sweep {record.sweep_id} finished: every trial ran",
                         hint=f"see 'reprun sweep show {record.sweep_id}'")
    return [t.index for t in record.trials if t.status is not Status.FINISHED]
