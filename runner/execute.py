"""Carry out a plan: record, environment, backend, outputs; the record is kept true throughout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from backends import BUILDS_OWN_ENVIRONMENT, check_installed, get_backend
from backends.base import Outcome, RemoteBackend, RunHandle, RunRequest
from runner.envs import get_builder
from runner.envs.base import EnvSpec, Lock, PythonFacts, ResolvedEnv, restore
from runner.envs.cache import cache_root
from runner.errors import Drift, Interrupted, NotSupportedError, ReprunError, StoreError
from runner.fsutil import atomic_write_bytes, atomic_write_text, sha256_bytes
from runner.plan import Plan
from runner.process import process_start_ticks, stop_signals_to
from runner.record.host import host_info
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    CondaInfo,
    ConvertedPackage,
    DriftEntry,
    EnvironmentInfo,
    OutputFile,
    Package,
    ProjectInfo,
    Reproduction,
    RunnerProcess,
    RunRecord,
    SourceInfo,
    Status,
    SweepRef,
    now,
)
from runner.spec.types import ParamType

if TYPE_CHECKING:
    from runner.tracking.inputs import Found
    from runner.tracking.mlflow import Tracker

PATCH_FILE = "source.patch"
SPEC_DIR = "spec"
DRY_RUN_ID = "dryrun00" + "0" * 24
Notify = Callable[[str], None]


class Control(Protocol):
    """How a caller running many plans at once (a sweep, in threads) follows and stops one.

    ``begun`` gets the run id once the record exists; ``submitting`` is called just before the
    command is started and raises `Interrupted` if it must not start; ``started`` gets the
    handle (and cancels it at once if a stop came meanwhile)."""

    def begun(self, run_id: str) -> None: ...

    def submitting(self) -> None: ...

    def started(self, handle: RunHandle) -> None: ...


def execute(plan: Plan, store: RunStore, notify: Notify,
            control: Control | None = None) -> RunRecord:
    """Run ``plan`` to the end and return its final record."""
    check_installed(plan.backend)  # before a run is recorded
    found = _fingerprint_inputs(plan, notify) if _declares_inputs(plan) else None
    run_id = uuid.uuid4().hex
    run_dir = store.create_run_dir(run_id)
    record = _first_record(plan, store, run_id, run_dir, found, notify)
    if control is not None:
        control.begun(run_id)
    notify(f"run {run_id} started: {plan.project.name} / {plan.options.entry_point}")
    forwarder = _SignalForwarder()
    tracker: Tracker | None = None
    handle: RunHandle | None = None
    try:
        with forwarder.installed():
            lock, reused = _try_reuse(plan, store, record, notify)
            if reused is not None:
                return reused
            tracker = _begin_tracking(plan, record, run_dir, notify)  # goes on in the background
            resolved, drift = _build_environment(plan, notify, lock)
            record = _with_environment(record, plan, resolved, run_dir, drift)
            store.save(record)
            request = _request(plan, record, resolved, run_dir, notify, tracker)
            record = _with_tracking(record, store, tracker)
            handle = _submit(plan, request, forwarder, control)
            record = record.model_copy(update={"backend": handle.info()})
            record = _with_facts(record, handle.facts(), detached=plan.options.detach)
            _save_while_running(store, record, notify)
            if plan.options.detach:
                if tracker is not None:
                    tracker.detached(record)
                return record
            outcome = handle.wait()
    except Interrupted as exc:
        record = _ended(record, Status.KILLED, None, f"stopped by {exc}", {"signal": str(exc)})
        _end(record, store, tracker, _save_last)
        raise
    except BaseException as exc:
        if handle is not None and not plan.options.detach:
            handle.cancel(signal.SIGTERM)  # reprun itself failed: the command must not go on
            handle.wait()
        reason = _describe(exc)
        _end(_ended(record, Status.FAILED, None, f"reprun failed: {reason}", {}), store, tracker,
             _save_last)
        if isinstance(exc, OSError):
            _raise_full(exc, plan, started=handle is not None)
            raise ReprunError(reason) from exc  # a full disk, a lost file: one line, no traceback
        raise
    record = _finished(record, outcome, Path(record.output_dir), plan.options.base_env)
    record = _with_metrics(record, plan, run_dir, notify)
    return _end(tracker.read_back(record) if tracker else record, store, tracker)


def _submit(plan: Plan, request: RunRequest, forwarder: _SignalForwarder,
            control: Control | None) -> RunHandle:
    """The command started; a signal from now on reaches it (or a sweep's stop does)."""
    forwarder.defer = True  # a signal from now on must reach the command, not abort us
    if control is not None:
        control.submitting()
    handle = get_backend(plan.backend).submit(request)
    forwarder.attach(handle)
    if control is not None:
        control.started(handle)
    return handle


def _try_reuse(plan: Plan, store: RunStore, record: RunRecord,
               notify: Notify) -> tuple[Lock | None, RunRecord | None]:
    """With --reuse: the new lock, and the record of a run whose outputs are taken, if any."""
    if not plan.options.reuse or plan.replay is not None:
        return None, None
    lock = _new_lock(plan, notify)
    return lock, _reuse(plan, store, record, lock, notify)


def _with_tracking(record: RunRecord, store: RunStore, tracker: Tracker | None) -> RunRecord:
    """The record with its MLflow run (created meanwhile in the background)."""
    if tracker is None:
        return record
    record = tracker.recorded(record)
    store.save(record)
    return record


def _begin_tracking(plan: Plan, record: RunRecord, run_dir: Path,
                    notify: Notify) -> Tracker | None:
    """The MLflow run on a tracking server, when one is named (runner.tracking.mlflow.settings)."""
    options = plan.options.tracking
    if options is None or options.uri is None:
        return None
    from runner.tracking.mlflow import is_server

    if not is_server(options.uri):
        return None
    from runner.tracking.mlflow import Tracker, mlflow_params

    given = {n: plan.options.params.get(n, p.default or "") for n, p in
             plan.entry.parameters.items() if p.type.value == "path"}
    return Tracker.begin(record, options, options.uri, plan.options.base_env, run_dir, notify,
                         mlflow_params(plan.params.values, given))


def _end(record: RunRecord, store: RunStore, tracker: Tracker | None,
         save: Callable[[RunStore, RunRecord], None] | None = None) -> RunRecord:
    """The final record saved, then sent to the tracking server (or kept for 'runs sync')."""
    if tracker is not None and record.mlflow is None:
        record = tracker.recorded(record)  # reprun failed before the command started
    if save is None:
        store.save(record)
    else:
        save(store, record)
    if tracker is not None:
        tracker.finish(record)
    return record


def _first_record(plan: Plan, store: RunStore, run_id: str, run_dir: Path,
                  found: list[Found] | None, notify: Notify) -> RunRecord:
    """The record written before anything runs; never a run directory without it."""
    try:
        record = _initial_record(plan, run_id, run_dir, notify)
        if found is not None:
            record = _with_inputs(record, plan, found, run_dir, store)
        store.save(record)
    except BaseException as exc:
        store.discard(run_id)
        if isinstance(exc, OSError):
            raise store.cannot_write(exc, "the run was not started") from None
        raise
    return record


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ReprunError):
        return exc.render()
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _save_while_running(store: RunStore, record: RunRecord, notify: Notify) -> None:
    """A record update once the command runs: a full disk must not stop the command; the final
    record (which has the run's reserve) says how it ended."""
    try:
        store.save(record)
    except StoreError as exc:
        notify(f"warning: {exc.render()}")


def _save_last(store: RunStore, record: RunRecord) -> None:
    """The record of a run reprun could not finish; the error that stopped it is what the user
    sees, even when this save fails too (the run then shows FAILED once reprun has exited)."""
    with contextlib.suppress(StoreError):
        store.save(record)


def _with_metrics(record: RunRecord, plan: Plan, run_dir: Path, notify: Notify) -> RunRecord:
    """What the run reported (files, the REPRUN_METRICS stream, printed lines), summarised."""
    from runner.tracking.metrics import with_metrics

    return with_metrics(record, run_dir, plan.entry.metrics, notify)


class _SignalForwarder:
    """SIGINT/SIGTERM go to the running command (staged stop); before it starts they interrupt.

    While the command is being started (``defer``), a signal is held and passed on once the
    handle exists, so that no command is ever left running untracked.
    """

    def __init__(self) -> None:
        self.handle: RunHandle | None = None
        self.defer = False
        self.pending: int | None = None

    def attach(self, handle: RunHandle) -> None:
        self.handle = handle
        if self.pending is not None:
            handle.cancel(self.pending)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.handle is not None:
            self.handle.cancel(signum)
        elif self.defer:
            self.pending = self.pending or signum
        else:
            raise Interrupted(signum)

    def installed(self) -> contextlib.AbstractContextManager[None]:
        return stop_signals_to(self._on_signal)


def _with_snapshot(plan: Plan, source: SourceInfo, run_dir: Path, notify: Notify) -> SourceInfo:
    """A project outside git keeps a snapshot of its files; a reproduction, the one it ran from."""
    from runner.source.snapshot import SNAPSHOT_FILE, SnapshotTooLarge, make_snapshot  # tarfile

    if plan.checkout.snapshot is not None:
        shutil.copyfile(plan.checkout.snapshot, run_dir / SNAPSHOT_FILE)
        return source
    try:
        snapshot = make_snapshot(plan.project.directory, run_dir / SNAPSHOT_FILE)
    except SnapshotTooLarge as exc:
        notify(f"warning: no snapshot: {exc}; this run cannot be reproduced from its record")
        return source.model_copy(update={"snapshot_skipped": str(exc)})
    return source.model_copy(update={"snapshot": snapshot})


def _initial_record(plan: Plan, run_id: str, run_dir: Path, notify: Notify) -> RunRecord:
    checkout = plan.checkout
    source = checkout.facts
    if checkout.patch:
        atomic_write_bytes(run_dir / PATCH_FILE, checkout.patch)
        source = source.model_copy(
            update={"patch_file": PATCH_FILE, "patch_sha256": sha256_bytes(checkout.patch)}
        )
    if checkout.snapshot is not None or (
        source.resolved_commit is None and source.checkout == "in-place"
    ):
        source = _with_snapshot(plan, source, run_dir, notify)
    _keep_spec(plan, run_dir / SPEC_DIR)
    replay = plan.replay
    output_dir = run_dir / "outputs"
    output_dir.mkdir()
    pid = os.getpid()
    host = host_info()
    return RunRecord(
        run_id=run_id,
        status=Status.RUNNING,
        entry_point=plan.options.entry_point,
        parameters=dict(plan.params.values),
        command=plan.params.command,
        project=ProjectInfo(
            uri=checkout.uri, path=str(plan.project.directory), name=plan.project.name,
            spec_file=str(plan.project.spec_file) if plan.project.spec_file else None,
        ),
        source=source,
        environment=EnvironmentInfo(kind=plan.project.env.kind, manager=plan.manager,
                                    **_conversion_fields(plan)),
        backend=BackendInfo(name=plan.backend),
        host=host,
        runner=RunnerProcess(hostname=host.hostname, pid=pid, start_ticks=process_start_ticks(pid)),
        output_dir=str(output_dir),
        started_at=now(),
        reproduces=replay.run_id if replay else None,
        sweep=SweepRef(id=plan.options.sweep_id, trial=plan.options.trial or 0)
        if plan.options.sweep_id is not None else None,
        reproduction=Reproduction(source=replay.source, missing_paths=dict(replay.missing_paths))
        if replay else None,
    )


def _keep_spec(plan: Plan, directory: Path) -> None:
    """Copies of the MLproject and environment files, so that an export carries them."""
    for path in (plan.project.spec_file, plan.project.env.file):
        if path is not None and path.is_file():
            directory.mkdir(exist_ok=True)
            shutil.copyfile(path, directory / path.name)


def _env_spec(plan: Plan, notify: Notify) -> EnvSpec:
    options = plan.options
    return EnvSpec(plan.project.env, plan.project.directory, plan.manager, options.base_env,
                   notify=notify, live=options.progress_live,
                   conda_channels=options.conda_channels, resolving=plan.resolving)


def _new_lock(plan: Plan, notify: Notify) -> Lock:
    """The lock a new run would use (resolved, or the cached one), before anything is built."""
    if plan.lock is not None:
        return plan.lock
    return get_builder(plan.manager).lock(_env_spec(plan, notify), refresh=plan.options.refresh)


def prepare_environment(plan: Plan, notify: Notify) -> Plan:
    """``plan`` with its environment resolved and built, for many runs that share it (a
    sweep's trials): none of them resolves or builds it again. A backend that builds its own
    environment (an image) gets the lock only; it builds the image on the first submission."""
    import dataclasses

    if plan.replay is not None:
        return plan  # a reproduction builds from its recorded lock
    lock = _new_lock(plan, notify)
    if plan.backend in BUILDS_OWN_ENVIRONMENT:
        return dataclasses.replace(plan, lock=lock)
    built = get_builder(plan.manager).ensure(_env_spec(plan, notify), lock)
    return dataclasses.replace(plan, lock=lock, environment=built)


def _build_environment(
    plan: Plan, notify: Notify, new_lock: Lock | None = None
) -> tuple[ResolvedEnv, tuple[Drift, ...]]:
    options = plan.options
    spec = _env_spec(plan, notify)
    builder = get_builder(plan.manager)
    replay = plan.replay
    if plan.environment is not None and replay is None:
        return plan.environment, ()  # built once for every run of the plan (a sweep)
    if plan.backend in BUILDS_OWN_ENVIRONMENT:
        # The backend installs the lock where the command runs (an image); nothing to build here.
        recorded = replay.lock if replay is not None else None
        lock = recorded or new_lock or plan.lock or builder.lock(spec, refresh=options.refresh)
        conda_env = plan.project.env.conda_env
        variables = dict(conda_env.variables) if conda_env and lock.manager == "conda" else {}
        return ResolvedEnv(lock.manager, lock, lock.sha256, _image_python(lock),
                           variables=variables), ()
    if replay is None:
        lock = new_lock or plan.lock or builder.lock(spec, refresh=options.refresh)
        return builder.ensure(spec, lock), ()
    return restore(builder, spec, replay.lock, replay.allow_drift, replay.recorded)


def _image_python(lock: Lock) -> PythonFacts:
    """The packages an image build installs from a Python lock (exactly its pins)."""
    if lock.manager not in ("uv", "virtualenv") or not lock.content:
        return PythonFacts()
    from runner.envs.python import pinned_packages

    return PythonFacts(packages=pinned_packages(lock.content))


def _with_environment(
    record: RunRecord, plan: Plan, resolved: ResolvedEnv, run_dir: Path,
    drift: tuple[Drift, ...],
) -> RunRecord:
    atomic_write_text(run_dir / resolved.lock.filename, resolved.lock.content)
    python = resolved.python
    environment = EnvironmentInfo(
        kind=plan.project.env.kind,
        manager=resolved.manager,
        python_version=python.version,
        python_executable=python.executable,
        packages=[Package(name=n, version=v) for n, v in python.packages],
        cache_key=resolved.cache_key,
        lock_file=resolved.lock.filename,
        lock_sha256=resolved.lock.sha256,
        conda=_conda_info(resolved),
        **_conversion_fields(plan),
    )
    from runner.tracking.reuse import reuse_key

    update: dict[str, object] = {
        "environment": environment,
        "reuse_key": reuse_key(record, resolved.lock.sha256, resolved.lock.manager),
    }
    if record.reproduction is not None and drift:
        entries = [DriftEntry(entry=d.entry, recorded=d.recorded, found=d.found, reason=d.reason)
                   for d in drift]
        update["reproduction"] = record.reproduction.model_copy(update={"drift": entries})
    return record.model_copy(update=update)


def _conversion_fields(plan: Plan) -> dict[str, Any]:
    """How a conda_env file was carried over to PyPI, for the record (empty if it was not)."""
    conversion = plan.project.env.conversion
    if conversion is None:
        return {}
    return {"converted_from": "conda",
            "conversion": [ConvertedPackage(conda=e.conda, pypi=e.pypi, note=e.note)
                           for e in conversion.entries]}


def _conda_info(resolved: ResolvedEnv) -> CondaInfo | None:
    conda = resolved.conda
    if conda is None:
        return None
    return CondaInfo(solver=conda.solver, channels=list(conda.channels), platform=conda.platform,
                     virtual_packages=list(conda.virtual_packages), prefix=conda.prefix)


def _with_facts(record: RunRecord, facts: Mapping[str, Any], detached: bool) -> RunRecord:
    """The backend's submission facts in the record; a detached run has no owning process."""
    merged = {**record.backend.facts, **facts}
    if detached:
        merged["detached"] = True
    update: dict[str, Any] = {"backend": record.backend.model_copy(update={"facts": merged})}
    if detached:
        update["runner"] = None
    return record.model_copy(update=update)


def preview(plan: Plan) -> str:
    """What a remote backend would submit for ``plan`` (``--dry-run``); nothing is contacted."""
    backend = get_backend(plan.backend)
    if not isinstance(backend, RemoteBackend):
        raise NotSupportedError(f"--backend {plan.backend} has nothing to preview")
    lock = Lock(plan.manager, "", "")
    resolved = ResolvedEnv(plan.manager, lock, "")
    request = RunRequest(
        run_id=DRY_RUN_ID, command=plan.params.command,
        workdir=plan.project.directory, env=MappingProxyType(dict(plan.options.base_env)),
        resolved_env=resolved, output_dir=Path(), log_path=Path(os.devnull),
        **_project_fields(plan),
    )
    return backend.preview(request)


def _project_fields(plan: Plan) -> dict[str, Any]:
    return {
        "project_name": plan.project.name, "entry_point": plan.options.entry_point,
        "env_kind": plan.project.env.kind, "docker_env": plan.project.env.docker,
        "backend_config": plan.options.backend_config, "config_dir": plan.options.cwd,
    }


def _request(
    plan: Plan, record: RunRecord, resolved: ResolvedEnv, run_dir: Path, notify: Notify,
    tracker: Tracker | None = None,
) -> RunRequest:
    from runner.tracking.metrics import STREAM_VARIABLE, stream_path

    env = resolved.child_env(plan.options.base_env)
    metrics_stream = stream_path(run_dir)
    env.update({
        "REPRUN_RUN_ID": record.run_id,
        "REPRUN_OUTPUT_DIR": record.output_dir,
        STREAM_VARIABLE: str(metrics_stream),
        "PYTHONUNBUFFERED": "1",
    })
    tracking = _tracking_env(plan, tracker, notify)
    env.update(tracking)
    return RunRequest(
        run_id=record.run_id,
        command=record.command,
        workdir=plan.project.directory,
        env=MappingProxyType(env),
        resolved_env=resolved,
        output_dir=Path(record.output_dir),
        log_path=run_dir / record.log_file,
        grace_period=plan.options.grace_period,
        echo=plan.options.echo,
        run_dir=run_dir,
        metrics_stream=metrics_stream,
        tracking_env=MappingProxyType(tracking),
        container=plan.container,
        notify=notify,
        detach=plan.options.detach,
        **_project_fields(plan),
    )


def _tracking_env(plan: Plan, tracker: Tracker | None, notify: Notify) -> dict[str, str]:
    """MLFLOW_RUN_ID, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID for the command."""
    if tracker is not None:
        return tracker.child_env()
    options = plan.options.tracking
    if options is None or options.uri is None:
        return {}
    from runner.tracking.mlflow import passed_on

    return passed_on(options, plan.options.cwd, notify)


def _ended(
    record: RunRecord, status: Status, code: int | None, reason: str | None, facts: dict[str, Any]
) -> RunRecord:
    ended = now()
    return record.model_copy(update={
        "status": status, "exit_code": code, "reason": reason, "ended_at": ended,
        "duration_s": round((ended - record.started_at).total_seconds(), 3),
        "backend": record.backend.model_copy(update={"facts": {**record.backend.facts, **facts}}),
    })


def _finished(record: RunRecord, outcome: Outcome, output_dir: Path,
              env: Mapping[str, str]) -> RunRecord:
    from runner.nofollow import links_under

    facts = dict(outcome.facts)
    links = links_under(output_dir) if output_dir.is_dir() else []
    if links:  # left out of the outputs, never followed (they may point at the host)
        facts["outputs_links_not_followed"] = links
    ended = _ended(record, outcome.status, outcome.exit_code, outcome.reason, facts)
    return ended.model_copy(update={"outputs": list_outputs(output_dir, env)})


def with_outputs(record: RunRecord) -> RunRecord:
    """A remote run that ended elsewhere: the outputs its backend brought back, recorded."""
    return record.model_copy(update={"outputs": list_outputs(Path(record.output_dir))})


def list_outputs(output_dir: Path, env: Mapping[str, str] | None = None) -> list[OutputFile]:
    """Every regular file under ``output_dir``, with its size and digest, sorted by path.

    The digests go into the stat cache (of ``env``'s cache root) at once: the command has ended,
    nothing writes these files any more, and a run that reads them next (or reuses them) need
    not read them."""
    paths = [p for p in sorted(output_dir.rglob("*")) if p.is_file() and not p.is_symlink()]
    if not paths:
        return []
    from runner.tracking.fingerprint import fingerprint_paths
    from runner.tracking.statcache import DATABASE, opened

    cache = cache_root(env) / DATABASE if env is not None else None
    with opened(cache, racy_s=0) as stat_cache:
        prints = fingerprint_paths(paths, stat_cache)
    return [OutputFile(path=p.relative_to(output_dir).as_posix(), size=f.size, digest=f.digest)
            for p, f in zip(paths, prints, strict=True)]


# --- inputs and reuse ----------------------------------------------------------------------------


def _digest_cache(plan: Plan) -> Path:
    from runner.tracking.statcache import DATABASE

    return cache_root(plan.options.base_env) / DATABASE


def _declares_inputs(plan: Plan) -> bool:
    """Whether the run has inputs to fingerprint; cheap, so that a run without any imports
    nothing of runner.tracking (path parameters, data:, or a DVC repository)."""
    if plan.project.spec.data or any(
            d.type is ParamType.PATH and n in plan.params.values
            for n, d in plan.entry.parameters.items()):
        return True
    if plan.replay is not None and plan.replay.inputs:
        return True
    directory = plan.project.directory
    return any((d / ".dvc").is_dir() for d in (directory, *directory.parents))


def _raise_full(exc: OSError, plan: Plan, started: bool) -> None:
    """A full disk: the documented line naming the store or the cache that is full."""
    from runner.nospace import full_error, is_full

    if is_full(exc):
        what = "the command stopped" if started else "the command was not started"
        raise full_error(exc, plan.options.base_env, f"{what} (the run is recorded FAILED)"
                         ) from exc


def _fingerprint_inputs(plan: Plan, notify: Notify) -> list[Found]:
    """The inputs and their fingerprints; a reproduction stops here if one changed."""
    from runner.tracking.inputs import (
        drift_error,
        fingerprint_sources,
        input_drift,
        input_sources,
        require_present,
    )
    from runner.tracking.statcache import opened

    project = plan.project
    sources = input_sources(project.directory, project.spec.data, plan.entry,
                            plan.params.values, project.spec_file)
    with opened(_digest_cache(plan)) as cache:
        found = fingerprint_sources(sources, cache, plan.options.progress_live)
    replay = plan.replay
    if replay is None:
        for warning in require_present(found, project.spec_file):
            notify(f"warning: {warning}")
        return found
    drift = input_drift(replay.inputs, replay.record_dir, found)
    if drift and not replay.allow_drift:
        raise drift_error(replay.run_id, drift)
    for item in drift:
        notify(f"drift: input '{item.name}' changed: {', '.join(item.files)}")
    return found


def _with_inputs(record: RunRecord, plan: Plan, found: list[Found], run_dir: Path,
                 store: RunStore) -> RunRecord:
    from runner.tracking.inputs import input_drift, input_records
    from runner.tracking.lineage import with_producers

    infos = with_producers(input_records(found, run_dir), found, store)
    update: dict[str, object] = {"inputs": infos}
    replay = plan.replay
    if replay is not None and record.reproduction is not None:
        drift = input_drift(replay.inputs, replay.record_dir, found)
        update["reproduction"] = record.reproduction.model_copy(update={"input_drift": drift})
    return record.model_copy(update=update)


def _reused_metrics(original: RunRecord, source: Path, run_dir: Path) -> dict[str, object]:
    """The metrics of a reused run are the new run's too: its summary and its history."""
    name = original.metrics_file
    if name is None or not (source / name).is_file():
        return {"metrics": original.metrics}
    shutil.copyfile(source / name, run_dir / name)
    return {"metrics": original.metrics, "metrics_file": name}


def _reuse(plan: Plan, store: RunStore, record: RunRecord, lock: Lock,
           notify: Notify) -> RunRecord | None:
    """The run finished at once with the outputs of an earlier run with the same reuse key."""
    from runner.tracking.reuse import copy_outputs, reuse_key
    from runner.tracking.statcache import opened

    key = reuse_key(record, lock.sha256, lock.manager)
    if key is None:
        notify("--reuse: the code of this run cannot be identified (no commit, no snapshot); "
               "running it")
        return None
    run_dir = store.run_dir(record.run_id)
    for candidate in store.reusable(key):
        original = store.load(candidate)
        with opened(_digest_cache(plan), racy_s=0) as cache:
            outputs = copy_outputs(original, Path(record.output_dir), cache)
        if outputs is None:
            notify(f"run {candidate[:8]} ran the same, but its outputs have changed since; "
                   "not reused")
            continue
        notify(f"unchanged since run {candidate[:8]}: reusing its outputs")
        atomic_write_text(run_dir / lock.filename, lock.content)
        atomic_write_text(run_dir / record.log_file,
                          f"reprun: unchanged since run {candidate}: reused its outputs\n")
        environment = original.environment.model_copy(
            update={"lock_file": lock.filename, "lock_sha256": lock.sha256})
        done = _ended(record.model_copy(update={
            "environment": environment, "reuse_key": key, "reused_from": candidate,
            "outputs": outputs, "runner": None,
            **_reused_metrics(original, store.run_dir(candidate), run_dir),
        }), Status.FINISHED, 0, None, {})
        store.save(done)
        return done
    return None
