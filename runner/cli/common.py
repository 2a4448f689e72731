"""Small helpers shared by the command modules (click only: cheap to import)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord

EXIT_USAGE = 2
EXIT_FAILURE = 1


def say(message: str) -> None:
    click.echo(f"reprun: {message}", err=True)


def say_refused(runs: RunStore) -> None:
    """A warning for each record the store refused while reading (one that lies about itself)."""
    for message in runs.refused.values():
        say(f"warning: {message}")


def store() -> RunStore:
    from runner.record.home import check_layout, reprun_home
    from runner.record.store import RunStore

    runs = RunStore(reprun_home(os.environ))
    check_layout(runs)
    return runs


def run_exit_code(record: RunRecord) -> int:
    """0 when the run finished (or goes on detached), the command's code when it failed,
    128+signal when stopped."""
    import signal

    from runner.record.types import Status

    if record.status in (Status.FINISHED, Status.RUNNING):  # RUNNING: a detached run
        return 0
    if record.status is Status.KILLED:
        name = record.backend.facts.get("signal", "SIGINT")
        return 128 + int(getattr(signal, str(name), signal.SIGINT))
    return record.exit_code if record.exit_code else EXIT_FAILURE


def current_record(runs_store: RunStore, run_id: str) -> RunRecord:
    """The record; a detached run on a remote backend is first brought up to date from there."""
    from backends import remote_backend
    from runner.errors import ReprunError
    from runner.record.types import Status

    record = runs_store.get(run_id)
    if record.status is not Status.RUNNING or record.runner is not None:
        return record
    backend = remote_backend(record.backend.name)
    if backend is None:
        return record
    run_dir = runs_store.run_dir(record.run_id)
    try:
        record = backend.refresh(record, run_dir)
    except ReprunError as exc:
        say(f"warning: cannot ask {record.backend.name} about run {record.run_id[:8]}: "
            f"{exc.render()}")
        return record
    if record.status.done:  # it ended while reprun was away: what it brought back and reported
        from runner.results import with_outputs
        from runner.tracking.metrics import completed_later
        from runner.tracking.mlflow.endpoint.podstore import import_store

        record = import_store(record, run_dir, say)  # what the pod logged with MLflow
        record = completed_later(with_outputs(record), run_dir, say)
    runs_store.save(record)
    return record
