"""Commands that reach beyond the store: ``cancel`` (a run where it runs), ``runs sync`` and
``runs push`` (runs and a tracking server)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from runner.cli.common import EXIT_FAILURE, current_record, say
from runner.cli.common import store as open_store

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord


@click.command()
@click.argument("run_id")
def cancel(run_id: str) -> int:
    """Stop a running run: a remote run is deleted where it runs; a local one is interrupted."""
    import signal

    from backends import remote_backend
    from runner.process import process_alive

    runs_store = open_store()
    record = current_record(runs_store, run_id)
    if record.status.done:
        say(f"run {record.run_id} has already ended: {record.status.value}")
        return 0
    backend = remote_backend(record.backend.name)
    if backend is not None:
        record = backend.cancel_recorded(record, runs_store.run_dir(record.run_id))
        runs_store.save(record)
        say(f"run {record.run_id} {record.status.value}: {record.reason}")
        return 0
    runner = record.runner
    if runner is not None and process_alive(runner.pid, runner.start_ticks):
        os.kill(runner.pid, signal.SIGTERM)
        say(f"run {record.run_id}: asked reprun (pid {runner.pid}) to stop it")
    return 0


@click.command("sync")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="Send to this server instead of the one recorded (a new address of it).")
def runs_sync(run_ids: tuple[str, ...], tracking_uri: str | None) -> int:
    """Send what runs could not send to their MLflow tracking server (every run with calls
    pending, or the runs given)."""
    from runner.errors import TrackingError
    from runner.tracking.mlflow import sync_run

    runs_store = open_store()
    records = [current_record(runs_store, r) for r in run_ids] if run_ids else \
        [current_record(runs_store, r.run_id) for r in _pending_runs(runs_store)]
    failed = 0
    for given in records:
        try:
            record, sent = sync_run(runs_store, given, os.environ, tracking_uri, say)
        except TrackingError as exc:
            failed += 1
            say(f"run {given.run_id[:8]}: not synced: {exc.render()}")
            continue
        where = record.mlflow.run_url if record.mlflow else None
        say(f"run {record.run_id[:8]}: " + (f"{sent} call(s) sent" if sent else "nothing pending")
            + (f"; {where}" if where else ""))
    return EXIT_FAILURE if failed else 0


def _pending_runs(runs_store: RunStore) -> list[RunRecord]:
    from runner.tracking.mlflow import PENDING_FILE

    home = runs_store.run_dir("x").parent
    found = sorted(home.glob(f"*/{PENDING_FILE}"), key=lambda p: p.stat().st_mtime)
    return [runs_store.get(path.parent.name) for path in found]


@click.command("push")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="The MLflow tracking server (env MLFLOW_TRACKING_URI).")
@click.option("--experiment-name", default=None, metavar="NAME",
              help="The MLflow experiment, created if missing (env MLFLOW_EXPERIMENT_NAME).")
@click.option("--experiment-id", default=None, metavar="ID",
              help="The MLflow experiment by id (env MLFLOW_EXPERIMENT_ID).")
@click.option("--log-outputs", is_flag=True, help="Upload the output files as artifacts too.")
def runs_push(run_ids: tuple[str, ...], tracking_uri: str | None, experiment_name: str | None,
              experiment_id: str | None, log_outputs: bool) -> int:
    """Send recorded runs to an MLflow tracking server, each as a new MLflow run with the tags,
    parameters, metrics and files a tracked run has."""
    from runner.tracking.mlflow import PENDING_FILE, push_run, tracking_options

    options = tracking_options(os.environ, tracking_uri, experiment_name, experiment_id,
                               log_outputs=log_outputs)
    runs_store = open_store()
    records = [runs_store.get(r) for r in run_ids]
    failed = 0
    for given in records:
        record = push_run(runs_store, given, options, os.environ, say)
        mlflow = record.mlflow
        if (runs_store.run_dir(record.run_id) / PENDING_FILE).is_file():
            failed += 1
        elif mlflow is not None:
            say(f"run {record.run_id[:8]}: MLflow run {mlflow.run_id}: {mlflow.run_url}")
            if options.uri is not None:  # the model versions it registered go with it
                from runner.models.mirror import push_versions
                from runner.models.store import ModelStore

                failed += push_versions(ModelStore(runs_store.home), record, options,
                                        os.environ, say)
    return EXIT_FAILURE if failed else 0
