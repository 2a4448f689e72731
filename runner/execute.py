"""Carry out a plan: record, environment, backend, outputs; the record is kept true throughout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any

from backends import BUILDS_OWN_ENVIRONMENT, get_backend
from backends.base import Outcome, RemoteBackend, RunHandle, RunRequest
from runner.envs import get_builder
from runner.envs.base import EnvSpec, Lock, ResolvedEnv, restore
from runner.errors import Drift, Interrupted, NotSupportedError
from runner.fsutil import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from runner.plan import Plan
from runner.process import process_start_ticks
from runner.record.host import host_info
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    CondaInfo,
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
    now,
)

if TYPE_CHECKING:
    from runner.tracking.mlflow_sink import Tracker

PATCH_FILE = "source.patch"
SPEC_DIR = "spec"
DRY_RUN_ID = "dryrun00" + "0" * 24
Notify = Callable[[str], None]


def execute(plan: Plan, store: RunStore, notify: Notify) -> RunRecord:
    """Run ``plan`` to the end and return its final record."""
    run_id = uuid.uuid4().hex
    run_dir = store.create_run_dir(run_id)
    record = _initial_record(plan, run_id, run_dir, notify)
    store.save(record)
    notify(f"run {run_id} started: {plan.project.name} / {plan.options.entry_point}")
    forwarder = _SignalForwarder()
    tracker: Tracker | None = None
    try:
        with forwarder.installed():
            tracker = _begin_tracking(plan, record, run_dir, notify)  # goes on in the background
            resolved, drift = _build_environment(plan, notify)
            record = _with_environment(record, plan, resolved, run_dir, drift)
            store.save(record)
            backend = get_backend(plan.backend)
            request = _request(plan, record, resolved, run_dir, notify, tracker)
            if tracker is not None:
                record = tracker.recorded(record)
                store.save(record)
            forwarder.defer = True  # a signal from now on must reach the command, not abort us
            handle = backend.submit(request)
            forwarder.attach(handle)
            record = record.model_copy(update={"backend": handle.info()})
            record = _with_facts(record, handle.facts(), detached=plan.options.detach)
            store.save(record)
            if plan.options.detach:
                notify(f"run {run_id} submitted to {plan.backend}; it goes on without reprun")
                if tracker is not None:
                    tracker.detached(record)
                return record
            outcome = handle.wait()
    except Interrupted as exc:
        record = _ended(record, Status.KILLED, None, f"stopped by {exc}", {"signal": str(exc)})
        _end(record, store, tracker)
        raise
    except BaseException as exc:
        reason = str(exc) or type(exc).__name__
        _end(_ended(record, Status.FAILED, None, f"reprun failed: {reason}", {}), store, tracker)
        raise
    record = _finished(record, outcome, Path(record.output_dir))
    record = _with_metrics(record, plan, run_dir, notify)
    if tracker is not None:
        record = tracker.read_back(record)
    _end(record, store, tracker)
    return record


def _begin_tracking(plan: Plan, record: RunRecord, run_dir: Path,
                    notify: Notify) -> Tracker | None:
    """The MLflow run on a tracking server, when one is named (see runner.tracking.settings)."""
    options = plan.options.tracking
    if options is None or options.uri is None:
        return None
    from runner.tracking.settings import is_server

    if not is_server(options.uri):
        return None
    from runner.tracking.mlflow_sink import Tracker, mlflow_params

    given = {n: plan.options.params.get(n, p.default or "") for n, p in
             plan.entry.parameters.items() if p.type.value == "path"}
    return Tracker.begin(record, options, options.uri, plan.options.base_env, run_dir, notify,
                         mlflow_params(plan.params.values, given))


def _end(record: RunRecord, store: RunStore, tracker: Tracker | None) -> None:
    """The final record saved, then sent to the tracking server (or kept for 'runs sync')."""
    if tracker is not None and record.mlflow is None:
        record = tracker.recorded(record)  # reprun failed before the command started
    store.save(record)
    if tracker is not None:
        tracker.finish(record)


def _with_metrics(record: RunRecord, plan: Plan, run_dir: Path, notify: Notify) -> RunRecord:
    """What the run reported (files, the REPRUN_METRICS stream, printed lines), summarised."""
    from runner.tracking.metrics import collect

    try:
        metrics, history = collect(run_dir, Path(record.output_dir), run_dir / record.log_file,
                                   plan.entry.metrics, record.parameters, notify)
    except OSError as exc:  # a full disk, a file made unreadable: the run's record comes first
        notify(f"warning: metrics: not recorded: {exc}")
        return record
    return record.model_copy(update={"metrics": metrics, "metrics_file": history})


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

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


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
        environment=EnvironmentInfo(kind=plan.project.env.kind, manager=plan.manager),
        backend=BackendInfo(name=plan.backend),
        host=host,
        runner=RunnerProcess(hostname=host.hostname, pid=pid, start_ticks=process_start_ticks(pid)),
        output_dir=str(output_dir),
        started_at=now(),
        reproduces=replay.run_id if replay else None,
        reproduction=Reproduction(source=replay.source, missing_paths=dict(replay.missing_paths))
        if replay else None,
    )


def _keep_spec(plan: Plan, directory: Path) -> None:
    """Copies of the MLproject and environment files, so that an export carries them."""
    for path in (plan.project.spec_file, plan.project.env.file):
        if path is not None and path.is_file():
            directory.mkdir(exist_ok=True)
            shutil.copyfile(path, directory / path.name)


def _build_environment(plan: Plan, notify: Notify) -> tuple[ResolvedEnv, tuple[Drift, ...]]:
    options = plan.options
    spec = EnvSpec(plan.project.env, plan.project.directory, plan.manager, options.base_env,
                   notify=notify, live=options.progress_live,
                   conda_channels=options.conda_channels, resolving=plan.resolving)
    builder = get_builder(plan.manager)
    replay = plan.replay
    if plan.backend in BUILDS_OWN_ENVIRONMENT:
        # The backend installs the lock where the command runs (an image); nothing to build here.
        recorded = replay.lock if replay is not None else None
        lock = recorded or builder.lock(spec, refresh=options.refresh)
        conda_env = plan.project.env.conda_env
        variables = dict(conda_env.variables) if conda_env and lock.manager == "conda" else {}
        return ResolvedEnv(lock.manager, lock, lock.sha256, variables=variables), ()
    if replay is None:
        return builder.ensure(spec, builder.lock(spec, refresh=options.refresh)), ()
    return restore(builder, spec, replay.lock, replay.allow_drift, replay.recorded)


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
    )
    update: dict[str, object] = {"environment": environment}
    if record.reproduction is not None and drift:
        entries = [DriftEntry(entry=d.entry, recorded=d.recorded, found=d.found, reason=d.reason)
                   for d in drift]
        update["reproduction"] = record.reproduction.model_copy(update={"drift": entries})
    return record.model_copy(update=update)


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
        **_project_fields(plan),
    )


def _tracking_env(plan: Plan, tracker: Tracker | None, notify: Notify) -> dict[str, str]:
    """MLFLOW_RUN_ID, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID for the command."""
    if tracker is not None:
        return tracker.child_env()
    options = plan.options.tracking
    if options is None or options.uri is None:
        return {}
    from runner.tracking.settings import passed_on

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


def _finished(record: RunRecord, outcome: Outcome, output_dir: Path) -> RunRecord:
    facts = dict(outcome.facts)
    ended = _ended(record, outcome.status, outcome.exit_code, outcome.reason, facts)
    return ended.model_copy(update={"outputs": list_outputs(output_dir)})


def list_outputs(output_dir: Path) -> list[OutputFile]:
    """Every regular file under ``output_dir``, with its size and sha256, sorted by path."""
    files = []
    for path in sorted(output_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files.append(OutputFile(path=path.relative_to(output_dir).as_posix(),
                                    size=path.stat().st_size, sha256=sha256_file(path)))
    return files
