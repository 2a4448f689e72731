"""``reprun reproduce``: the flow of a run, walked from a record instead of a command line.

Source from the record (:mod:`runner.source.recorded`), the same entry point and command with the
same parameter values (not re-resolved), the environment rebuilt from the recorded lock (never
re-resolved unless ``--allow-drift``), the recorded backend; the new record says which run it
reproduces, and ``--check`` compares its outputs with the original's.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from backends import BUILDS_OWN_ENVIRONMENT, remote_backend
from runner.envs.base import Lock, PythonFacts
from runner.errors import EnvBuildError, NotSupportedError, UsageError
from runner.execute import execute
from runner.frozen import frozen
from runner.fsutil import sha256_file
from runner.plan import (
    Plan,
    Replay,
    RunOptions,
    choose_backend,
    choose_manager,
    converted,
    release_plan,
)
from runner.record.export import Recorded, open_run
from runner.record.store import RunStore
from runner.record.types import OutputFile, OutputsCheck, RunRecord
from runner.source.checkout import release
from runner.source.recorded import checkout_recorded
from runner.spec.params import ResolvedParams
from runner.spec.project import load_project
from runner.spec.types import EntryPoint, ParamType

if TYPE_CHECKING:
    from runner.tracking.mlflow import TrackingOptions

Notify = Callable[[str], None]


@frozen
class ReproduceOptions:
    target: str
    cwd: Path
    base_env: Mapping[str, str]
    backend: str | None = None
    env_manager: str | None = None
    allow_drift: bool = False
    check: bool = False
    grace_period: float = 10.0
    echo: bool = True
    docker_base_image: str | None = None
    backend_config: str | None = None  # a remote backend's: keys replacing the recorded ones
    tracking: TrackingOptions | None = None


def reproduce(options: ReproduceOptions, store: RunStore,
              notify: Notify) -> tuple[RunRecord, RunRecord]:
    """Run the recorded run again; returns (the original record, the new one)."""
    with contextlib.ExitStack() as stack:
        rec = open_run(options.target, store, stack)
        return rec.record, reproduce_recorded(rec, options, store, notify)


def reproduce_recorded(rec: Recorded, options: ReproduceOptions, store: RunStore,
                       notify: Notify) -> RunRecord:
    """Run ``rec`` again (its files opened by the caller); returns the new record."""
    plan = plan_reproduction(rec, options, notify)
    try:
        assert plan.replay is not None
        for name, path in plan.replay.missing_paths.items():
            notify(f"warning: path parameter '{name}' names '{path}', which is gone")
        record = execute(plan, store, notify)
    finally:
        release_plan(plan)
    if options.check and record.reproduction is not None:
        check = compare_outputs(rec.record.outputs, record.outputs, Path(record.output_dir))
        reproduction = record.reproduction.model_copy(update={"check": check})
        record = record.model_copy(update={"reproduction": reproduction})
        store.save(record)
    return record


def plan_reproduction(rec: Recorded, options: ReproduceOptions,
                      notify: Notify = lambda _m: None) -> Plan:
    """A plan that runs what ``rec`` ran; nothing in it is resolved anew."""
    record = rec.record
    if record.kind == "pipeline":
        steps = record.pipeline.steps if record.pipeline else []
        first = next((s.run_id[:8] for s in steps if s.run_id), "STEP_RUN")
        raise NotSupportedError(f"run {record.run_id[:8]} is a pipeline run, which is "
                                "reproduced as a whole by its id or its exported file",
                                hint=f"give one of those, or reproduce its steps' runs (reprun "
                                     f"reproduce {first})")
    checkout = checkout_recorded(rec, options.base_env)
    try:
        project = load_project(checkout.directory)
        entry = project.entry_point(record.entry_point)
        _bring_left_out_data(record, project.spec.data, checkout.directory, notify)
        backend = choose_backend(options.backend or record.backend.name, project)
        manager = choose_manager(options.env_manager or record.environment.manager, project,
                                 backend)
        # A conda project installed from PyPI: the recorded lock says what to install; the
        # conversion is for the record (and for resolving anew), so conda-only packages are
        # left out as the original run left them out.
        project = converted(project, manager, allow_drift=True)
        lock = recorded_lock(rec, manager, options.allow_drift)
        env = record.environment
        recorded = PythonFacts(env.python_version, env.python_executable,
                               tuple((p.name, p.version) for p in env.packages))
        replay = Replay(
            run_id=record.run_id, lock=lock, allow_drift=options.allow_drift,
            source="snapshot" if checkout.snapshot else "git",
            recorded=recorded if lock is None and env.lock_file else PythonFacts(),
            missing_paths=missing_paths(record, entry),
            inputs=tuple(record.inputs), record_dir=rec.directory,
        )
    except BaseException:
        release(checkout, options.base_env)
        raise
    backend_config = _backend_config(rec, backend, options, notify)
    run_options = RunOptions(
        uri=record.project.uri, cwd=options.cwd, base_env=options.base_env,
        entry_point=record.entry_point, version=record.source.requested_version,
        params=dict(record.parameters), env_manager=manager, backend=backend,
        grace_period=options.grace_period, echo=options.echo, backend_config=backend_config,
        tracking=_tracking(record, options.tracking),
    )
    params = ResolvedParams(
        MappingProxyType(dict(record.parameters)),
        tuple(n for n in record.parameters if n not in entry.parameters), record.command,
    )
    container = None
    if backend in BUILDS_OWN_ENVIRONMENT:
        from backends.docker.container import container_spec

        docker = record.backend.docker
        recorded_base = docker.base_image if docker else None
        replaced = docker is not None and docker.base_image_replaces is not None
        container = container_spec(project, entry, params.values, options.base_env,
                                   options.docker_base_image or recorded_base, False,
                                   check_host_vars=backend == "docker",
                                   replace_env_image=replaced)
    return Plan(run_options, checkout, project, entry, params, manager, backend,
                container=container, replay=replay)


def _bring_left_out_data(record: RunRecord, data: list[str] | tuple[str, ...],
                         directory: Path, notify: Notify) -> None:
    """Declared data the source left out (ignored files) comes from where the run read it."""
    if record.source.checkout != "in-place" or not data:
        return
    from runner.tracking.left_out import bring_left_out_data

    for item in bring_left_out_data(data, directory, Path(record.project.path)):
        notify(f"data '{item}' is not in the recorded source; comparing it as it is in "
               f"{record.project.path}")


def _backend_config(rec: Recorded, backend: str, options: ReproduceOptions,
                    notify: Notify) -> str | None:
    """A remote backend's config: the recorded one (``--backend-config`` keys on top)."""
    remote = remote_backend(backend)
    if remote is None:
        if options.backend_config:
            raise UsageError(f"--backend-config applies to remote backends, not to --backend "
                             f"{backend}", hint="leave it out")
        return None
    if rec.record.backend.name != backend:
        return options.backend_config
    return remote.replay_config(rec.record, rec.directory, options.backend_config, options.cwd,
                                notify)


def _tracking(record: RunRecord, given: TrackingOptions | None) -> TrackingOptions | None:
    """A tracked run's reproduction goes to the same server and experiment unless told
    otherwise; its MLflow run is tagged with the MLflow run it reproduces."""
    mlflow = record.mlflow
    if mlflow is None:
        return given
    from runner.tracking.mlflow import TrackingOptions

    if given is None or given.uri is None:
        given = TrackingOptions(uri=mlflow.tracking_uri, experiment_id=mlflow.experiment_id,
                                run_name=given.run_name if given else None)
    return dataclasses.replace(given, reproduces=mlflow.run_id)


def recorded_lock(rec: Recorded, manager: str, allow_drift: bool) -> Lock | None:
    """The lock saved with the record, checked against its sha256; None when not usable."""
    record, env = rec.record, rec.record.environment
    if env.lock_file is None:
        return None  # the run ended before its environment was built
    path = rec.directory / env.lock_file
    if not path.is_file():
        raise EnvBuildError(f"the lock file '{path}' of run {record.run_id[:12]} is missing",
                            hint="reproduce from the run's store or from its exported file")
    lock = Lock.recorded(env.manager, env.lock_file, path.read_bytes().decode("utf-8"))
    if env.lock_sha256 and lock.sha256 != env.lock_sha256:
        raise EnvBuildError(f"the lock file '{path}' does not match its sha256 in the record",
                            hint="the file was changed; reproduce from an untouched export")
    if manager == env.manager:
        return lock
    if not allow_drift:
        raise EnvBuildError(
            f"run {record.run_id[:12]} was locked by --env-manager {env.manager} "
            f"({env.lock_file}); --env-manager {manager} cannot build from that lock",
            hint="drop --env-manager to rebuild from the lock, or add --allow-drift to resolve "
                 "anew and record the drift",
        )
    return None


def missing_paths(record: RunRecord, entry: EntryPoint) -> dict[str, str]:
    """The ``path`` parameters whose recorded file or directory no longer exists."""
    return {
        name: record.parameters[name]
        for name, decl in entry.parameters.items()
        if decl.type is ParamType.PATH and name in record.parameters
        and not Path(record.parameters[name]).exists()
    }


def compare_outputs(original: list[OutputFile], new: list[OutputFile],
                    output_dir: Path | None = None) -> OutputsCheck:
    """identical, different (which files, extra ones included) or missing (which files).

    An original recorded before reprun 0.2 has sha256 digests: the new files in ``output_dir``
    are then hashed with sha256 to compare."""
    before = {o.path: (o.size, o.content) for o in original}
    after = {o.path: (o.size, _same_algorithm(o, before.get(o.path), output_dir)) for o in new}
    different = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    missing = sorted(before.keys() - after.keys())
    extra = sorted(after.keys() - before.keys())
    result = "different" if different or extra else "missing" if missing else "identical"
    return OutputsCheck(result=result, different=different, missing=missing, extra=extra)


def _same_algorithm(new: OutputFile, old: tuple[int, str] | None, output_dir: Path | None) -> str:
    if old is None or not old[1].startswith("sha256:") or new.sha256 is not None:
        return new.content
    path = output_dir / new.path if output_dir is not None else None
    if path is None or not path.is_file():
        return new.content
    return f"sha256:{sha256_file(path)}"
