"""Commands that make a run again or move one: ``reproduce``, ``export``, ``diff``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.common import EXIT_FAILURE, run_exit_code, say
from runner.cli.common import store as open_store

if TYPE_CHECKING:
    from runner.tracking.mlflow import TrackingOptions


@click.command()
@click.argument("target", metavar="RUN_ID|FILE")
@click.option("-b", "--backend", default=None, help="Where to run (default: the recorded backend).")
@click.option("--env-manager", default=None, metavar="MANAGER",
              help="How to build the environment (default: the recorded manager).")
@click.option("--check", is_flag=True,
              help="Compare the outputs with the original's; exit 0 only when identical.")
@click.option("--allow-drift", is_flag=True,
              help="If the recorded lock cannot be honoured, run anyway and record the drift.")
@click.option("--grace-period", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between interrupting the command and killing it.")
@click.option("--docker-base-image", default=None, metavar="IMAGE",
              envvar="REPRUN_DOCKER_BASE_IMAGE",
              help="With --backend docker: the base image (default: the recorded one, else "
                   "python:<version>-slim).")
@click.option("--backend-config", default=None, metavar="CONFIG",
              help="With a remote backend: keys (JSON or a JSON/YAML file) that replace the "
                   "recorded backend config's.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="An MLflow tracking server for the new run (default: the original's, if it "
                   "was tracked; env MLFLOW_TRACKING_URI).")
@click.option("--experiment-name", default=None, metavar="NAME",
              help="The MLflow experiment (default: the original's).")
@click.option("--experiment-id", default=None, metavar="ID", help="The MLflow experiment by id.")
@click.option("-q", "--quiet", is_flag=True, help="Only the command's own output.")
def reproduce(target: str, backend: str | None, env_manager: str | None, check: bool,
              allow_drift: bool, grace_period: float, docker_base_image: str | None,
              backend_config: str | None, tracking_uri: str | None,
              experiment_name: str | None, experiment_id: str | None, quiet: bool) -> int:
    """Run a recorded run again: its commit and patch (or snapshot), parameters, locked
    environment and backend. RUN_ID is a run of the store (a unique prefix is enough); FILE is
    a file made by 'reprun export', or a run.json."""
    from runner.reproduce import ReproduceOptions
    from runner.reproduce import reproduce as run_again

    options = ReproduceOptions(
        target=target, cwd=Path.cwd(), base_env=dict(os.environ), backend=backend,
        env_manager=env_manager, allow_drift=allow_drift, check=check,
        grace_period=grace_period, echo=True, docker_base_image=docker_base_image,
        backend_config=backend_config,
        tracking=_tracking(tracking_uri, experiment_name, experiment_id),
    )
    runs_store = open_store()
    runs_store.check_writable()
    import contextlib

    from runner.pipeline.reproduce import open_pipeline

    with contextlib.ExitStack() as stack:
        pipeline = open_pipeline(target, runs_store, stack)
        if pipeline is not None:
            from runner.cli.pipeline import reproduce_steps

            return reproduce_steps(pipeline[0], pipeline[1], options, runs_store, check, quiet)
    original, record = run_again(options, runs_store, (lambda _m: None) if quiet else say)
    replay = record.reproduction
    if not quiet:
        for drift in replay.drift if replay else []:
            why = f" ({drift.reason})" if drift.reason else ""
            say(f"drift: {drift.entry}: locked {drift.recorded or '-'}, "
                 f"here {drift.found or '-'}{why}")
        why = f": {record.reason}" if record.reason and record.status.value != "FINISHED" else ""
        say(f"run {record.run_id} reproduces {original.run_id}: {record.status.value} in "
             f"{record.duration_s:.2f} s{why} (reprun diff {original.run_id[:8]} "
             f"{record.run_id[:8]})")
    code = run_exit_code(record)
    if not check or replay is None or replay.check is None:
        return code
    result = replay.check
    if result.result == "identical":
        say(f"outputs identical: {len(record.outputs)} file(s)")
        return code
    for what, paths in (("different", result.different), ("missing", result.missing),
                        ("extra", result.extra)):
        if paths:
            say(f"outputs {what}: {', '.join(paths)}")
    return code or EXIT_FAILURE


def _tracking(uri: str | None, experiment_name: str | None,
              experiment_id: str | None) -> TrackingOptions | None:
    if not (uri or os.environ.get("MLFLOW_TRACKING_URI") or experiment_name or experiment_id):
        return None
    from runner.tracking.mlflow import tracking_options

    return tracking_options(os.environ, uri, experiment_name, experiment_id)


@click.command("export")
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The file to write (default: reprun-RUNID.tar.gz here).")
def export_cmd(run_id: str, output: Path | None) -> int:
    """Write one portable file (tar.gz) holding a run's record, lock, patch, snapshot and
    MLproject; 'reprun reproduce FILE' runs it again on any machine."""
    from runner.record.export import export_run

    path = export_run(open_store(), run_id, output)
    click.echo(str(path))
    return 0


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def diff_cmd(run_a: str, run_b: str, as_json: bool) -> int:
    """What differs between two runs (run ids, exported files or run.json files): code,
    parameters, environment, backend, host, outputs, status, exit code, duration."""
    from runner.diff import diff_runs, render_text

    result = diff_runs(run_a, run_b, open_store(), dict(os.environ))
    click.echo(json.dumps(result, indent=2) if as_json else render_text(result))
    return 0
