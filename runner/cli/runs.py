"""Commands about recorded runs: ``runs list|show|logs|reindex``, ``reproduce``, ``export``,
``diff``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.common import EXIT_FAILURE, run_exit_code, say
from runner.cli.common import store as open_store

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord


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
@click.option("-q", "--quiet", is_flag=True, help="Only the command's own output.")
def reproduce(target: str, backend: str | None, env_manager: str | None, check: bool,
              allow_drift: bool, grace_period: float, docker_base_image: str | None,
              backend_config: str | None, quiet: bool) -> int:
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
    )
    original, record = run_again(options, open_store(), (lambda _m: None) if quiet else say)
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
    click.echo(json.dumps(result, indent=2) if as_json else render_text(result), nl=as_json)
    return 0


@click.group()
def runs() -> None:
    """List and inspect recorded runs."""


@runs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None,
              help="Show at most this many runs.")
def runs_list(as_json: bool, limit: int | None) -> int:
    """Recorded runs, newest first."""
    import dataclasses

    summaries = open_store().list(limit)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(s) for s in summaries], indent=2))
        return 0
    click.echo(f"{'RUN ID':<12}  {'STATUS':<8}  {'STARTED':<19}  {'DURATION':>9}  {'EXIT':>4}  "
               "PROJECT / ENTRY POINT")
    for s in summaries:
        duration = f"{s.duration_s:.2f}s" if s.duration_s is not None else "-"
        code = "-" if s.exit_code is None else str(s.exit_code)
        started = s.started_at[:19].replace("T", " ")
        click.echo(f"{s.run_id[:12]:<12}  {s.status:<8}  {started:<19}  {duration:>9}  "
                   f"{code:>4}  {s.project} / {s.entry_point}")
    return 0


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def runs_show(run_id: str, as_json: bool) -> int:
    """The record of one run (a unique prefix of its id is enough)."""
    runs_store = open_store()
    record = _current(runs_store, run_id)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return 0
    src, env = record.source, record.environment
    lines = [
        ("run", record.run_id), ("status", record.status.value),
        ("exit code", record.exit_code), ("reason", record.reason),
        ("reproduces", record.reproduces),
        ("project", f"{record.project.name} ({record.project.uri})"),
        ("entry point", record.entry_point), ("command", record.command),
        ("parameters", ", ".join(f"{k}={v}" for k, v in record.parameters.items()) or "-"),
        ("source", f"{src.uri}{'#' + src.subdirectory if src.subdirectory else ''}"
                   f" ({src.checkout})" if src.uri else None),
        ("version", src.requested_version),
        ("git", f"{src.git_commit or '-'}{' (dirty)' if src.git_dirty else ''}"
                f"{' on ' + src.git_branch if src.git_branch else ''}"),
        ("submodules", ", ".join(f"{s.path}@{s.commit[:12]}" for s in src.submodules) or None),
        ("environment", f"{env.kind} via {env.manager}, python {env.python_version or '-'}, "
                        f"{len(env.packages)} packages"),
        ("converted", _conversion_line(record)),
        ("image", _image_line(record)),
        ("started", record.started_at.isoformat()), ("duration", f"{record.duration_s} s"),
        ("outputs", f"{len(record.outputs)} file(s) in {record.output_dir}"),
        ("record", str(runs_store.run_dir(record.run_id))),
    ]
    for key, value in lines:
        if value is not None:
            click.echo(f"{key + ':':<13}{value}")
    return 0


def _conversion_line(record: RunRecord) -> str | None:
    """``from conda: numpy>=1.14.3, torch>=2; not installed: pip, mkl``."""
    env = record.environment
    if env.converted_from is None:
        return None
    installed = ", ".join(c.pypi for c in env.conversion if c.pypi) or "-"
    left_out = ", ".join(c.conda for c in env.conversion if c.pypi is None)
    return f"from {env.converted_from}: {installed}" + (
        f"; not installed: {left_out}" if left_out else "")


def _image_line(record: RunRecord) -> str | None:
    docker = record.backend.docker
    if docker is None:
        return None
    how = "built" if docker.built else "reused"
    return f"{docker.image} ({docker.image_id}, {how}) from {docker.base_image}"


@runs.command("logs")
@click.argument("run_id")
def runs_logs(run_id: str) -> int:
    """The captured output of a run."""
    runs_store = open_store()
    record = _current(runs_store, run_id)
    log = runs_store.run_dir(record.run_id) / record.log_file
    if log.is_file():
        with log.open("rb") as handle:
            while chunk := handle.read(65536):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


@runs.command("reindex")
def runs_reindex() -> int:
    """Rebuild the run index from the records."""
    count = open_store().reindex()
    say(f"indexed {count} run(s)")
    return 0


def _current(runs_store: RunStore, run_id: str) -> RunRecord:
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
    try:
        record = backend.refresh(record, runs_store.run_dir(record.run_id))
    except ReprunError as exc:
        say(f"warning: cannot ask {record.backend.name} about run {record.run_id[:8]}: "
            f"{exc.render()}")
        return record
    if record.status.done:
        from runner.execute import with_outputs

        record = with_outputs(record)
    runs_store.save(record)
    return record


@click.command()
@click.argument("run_id")
def cancel(run_id: str) -> int:
    """Stop a running run: a remote run is deleted where it runs; a local one is interrupted."""
    import signal

    from backends import remote_backend
    from runner.process import process_alive

    runs_store = open_store()
    record = _current(runs_store, run_id)
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
