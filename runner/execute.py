"""Carry out a plan: record, environment, backend, outputs; the record is kept true throughout."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from backends import BUILDS_OWN_ENVIRONMENT, check_installed, get_backend
from backends.base import RemoteBackend, RunHandle, RunRequest
from runner.announce import Announce
from runner.environment import build_environment, new_lock, with_environment
from runner.envs.base import Lock, ResolvedEnv
from runner.errors import Interrupted, NotSupportedError, ReprunError, StoreError, UsageError
from runner.first_record import first_record
from runner.plan import Plan
from runner.process import stop_signals_to
from runner.record.store import RunStore
from runner.record.types import (
    RunRecord,
    Status,
)
from runner.results import (
    declares_inputs,
    ended,
    fingerprint_inputs,
    finished,
    reuse,
)

if TYPE_CHECKING:
    from runner.tracking.mlflow import Tracker
    from runner.tracking.mlflow.endpoint import Capture

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
    found = fingerprint_inputs(plan, notify) if declares_inputs(plan) else None
    run_id = uuid.uuid4().hex
    run_dir = store.create_run_dir(run_id)
    record = first_record(plan, store, run_id, run_dir, found, notify)
    if control is not None:
        control.begun(run_id)
    notify = announce = Announce(
        notify, f"run {run_id} started: {plan.project.name} / {plan.options.entry_point}")
    forwarder = _SignalForwarder()
    tracker: Tracker | Capture | None = None
    handle: RunHandle | None = None
    try:
        with forwarder.installed():
            lock, reused = _try_reuse(plan, store, record, notify)
            if reused is not None:
                return reused
            tracker = _begin_tracking(plan, record, run_dir, notify)  # goes on in the background
            resolved, drift = build_environment(plan, notify, lock)
            record = with_environment(record, plan, resolved, run_dir, drift)
            _built(plan, announce)
            store.save(record)
            request = _request(plan, record, resolved, run_dir, notify, tracker)
            record = _with_tracking(record, store, tracker)
            handle = _submit(plan, request, forwarder, control, announce)
            record = _with_facts(record.model_copy(update={"backend": handle.info()}),
                                 handle.facts(), detached=plan.options.detach)
            _save_while_running(store, record, notify)
            if plan.options.detach:
                if tracker is not None:
                    tracker.detached(record)
                return record
            outcome = handle.wait()
    except Interrupted as exc:
        record = ended(record, Status.KILLED, None, f"stopped by {exc}", {"signal": str(exc)})
        _end(record, store, tracker, _save_last)
        raise
    except BaseException as exc:
        if _forgotten(exc, announce.said or control is not None, tracker, store, run_id):
            raise
        if handle is not None and not plan.options.detach:
            handle.cancel(signal.SIGTERM)  # reprun itself failed: the command must not go on
            handle.wait()
        reason = _describe(exc)
        _end(ended(record, Status.FAILED, None, f"reprun failed: {reason}", {}), store, tracker,
             _save_last)
        if isinstance(exc, OSError):
            raise _os_error(exc, plan, reason, started=handle is not None) from exc
        raise
    record = finished(_with_pod_store(record, tracker, run_dir, notify), outcome,
                      Path(record.output_dir), plan.options.base_env)
    record = _with_metrics(record, plan, run_dir, notify)
    record = _end(tracker.read_back(record) if tracker else record, store, tracker)
    _register_models(plan, record, store, notify)
    return record


def _register_models(plan: Plan, record: RunRecord, store: RunStore, notify: Notify) -> None:
    if plan.entry.models:  # MLproject's models: registered as the run finished
        from runner.models.auto import register_declared

        register_declared(plan.entry.models, record, store, notify)


def _built(plan: Plan, announce: Announce) -> None:
    """The environment is built: a run on this machine has begun (a backend that builds its
    own image has begun once that is built)."""
    if plan.backend not in BUILDS_OWN_ENVIRONMENT:
        announce.now()


def _forgotten(exc: BaseException, kept: bool, tracker: Tracker | Capture | None,
               store: RunStore, run_id: str) -> bool:
    """A mistake in what was typed (exit 2), found before anything ran nor was said (nor a
    sweep or a tracking server's MLflow run holds the run): the run is not kept."""
    if kept or not isinstance(exc, UsageError):
        return False
    from runner.tracking.mlflow.endpoint import Capture

    if tracker is not None and not isinstance(tracker, Capture):
        return False
    if tracker is not None:
        tracker.stop()  # reprun's own endpoint for the project's MLflow calls
    store.delete(run_id)
    return True


def _submit(plan: Plan, request: RunRequest, forwarder: _SignalForwarder,
            control: Control | None, announce: Announce) -> RunHandle:
    """The command started; a signal from now on reaches it (or a sweep's stop does)."""
    forwarder.defer = True  # a signal from now on must reach the command, not abort us
    if control is not None:
        control.submitting()
    handle = get_backend(plan.backend).submit(request)
    announce.now()
    forwarder.attach(handle)
    if control is not None:
        control.started(handle)
    return handle


def _try_reuse(plan: Plan, store: RunStore, record: RunRecord,
               notify: Notify) -> tuple[Lock | None, RunRecord | None]:
    """With --reuse: the new lock, and the record of a run whose outputs are taken, if any."""
    if not plan.options.reuse or plan.replay is not None:
        return None, None
    lock = new_lock(plan, notify)
    return lock, reuse(plan, store, record, lock, notify)


def _with_tracking(record: RunRecord, store: RunStore,
                   tracker: Tracker | Capture | None) -> RunRecord:
    """The record with its MLflow run (created meanwhile in the background)."""
    if tracker is None:
        return record
    record = tracker.recorded(record)
    store.save(record)
    return record


def _begin_tracking(plan: Plan, record: RunRecord, run_dir: Path,
                    notify: Notify) -> Tracker | Capture | None:
    """The MLflow run on a tracking server, when one is named (runner.tracking.mlflow.settings);
    when none is, reprun answers the project's MLflow calls itself (...mlflow.endpoint)."""
    options = plan.options.tracking
    if options is None or options.uri is None:
        from backends import REMOTE_BACKENDS
        from runner.tracking.mlflow.endpoint import begin_for

        return begin_for(record, run_dir, remote=plan.backend in REMOTE_BACKENDS,
                         detach=plan.options.detach, tracking=options,
                         env=plan.options.base_env, notify=notify)
    from runner.tracking.mlflow import is_server

    if not is_server(options.uri):
        return None
    from runner.tracking.mlflow import Tracker, mlflow_params

    given = {n: plan.options.params.get(n, p.default or "") for n, p in
             plan.entry.parameters.items() if p.type.value == "path"}
    return Tracker.begin(record, options, options.uri, plan.options.base_env, run_dir, notify,
                         mlflow_params(plan.params.values, given))


def _end(record: RunRecord, store: RunStore, tracker: Tracker | Capture | None,
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


def _with_pod_store(record: RunRecord, tracker: Tracker | Capture | None, run_dir: Path,
                    notify: Notify) -> RunRecord:
    """What a pod logged into its own MLflow store (it came back with the outputs)."""
    from runner.tracking.mlflow.endpoint.podstore import import_store

    return import_store(record, run_dir, notify) if tracker is None else record


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
    tracker: Tracker | Capture | None = None,
) -> RunRequest:
    from runner.tracking.metricfiles import STREAM_VARIABLE
    from runner.tracking.metrics import stream_path

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
        workdir=plan.workdir or plan.project.directory,
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
        array=plan.options.array,
        **_project_fields(plan),
    )


def _tracking_env(plan: Plan, tracker: Tracker | Capture | None,
                  notify: Notify) -> dict[str, str]:
    """MLFLOW_RUN_ID, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID for the command."""
    if tracker is not None:
        return tracker.child_env()
    options = plan.options.tracking
    if options is None or options.uri is None:
        return {}
    from runner.tracking.mlflow import passed_on

    return passed_on(options, plan.options.cwd, notify)


def _os_error(exc: OSError, plan: Plan, reason: str, started: bool) -> ReprunError:
    """A full disk, a lost file: one line, no traceback; a full disk in the documented words,
    naming the store or the cache that is full."""
    from runner.nospace import full_error, is_full

    if not is_full(exc):
        return ReprunError(reason)
    what = "the command stopped" if started else "the command was not started"
    return full_error(exc, plan.options.base_env, f"{what} (the run is recorded FAILED)")
