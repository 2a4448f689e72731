"""The command line. The only place that turns exceptions into messages and exit codes.

Heavy modules (pydantic models, backends, environment builders) are imported inside the commands,
so that ``reprun --help`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner import __version__

if TYPE_CHECKING:
    from runner.record import RunRecord
    from runner.store import RunStore

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _say(message: str) -> None:
    click.echo(f"reprun: {message}", err=True)


def _store() -> RunStore:
    from runner.store import RunStore, reprun_home

    return RunStore(reprun_home(os.environ))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reprun")
@click.option("--debug", is_flag=True, help="Show a traceback for errors.")
def cli(debug: bool) -> None:
    """Run MLproject projects reproducibly and remember exactly how each run ran.

    REPRUN_HOME (default ~/.reprun) holds the run store.
    """


@cli.command()
@click.argument("uri")
@click.option("-e", "--entry-point", default="main", show_default=True,
              help="Entry point name, or a .py/.sh file of the project.")
@click.option("-v", "--version", "version", default=None, metavar="REV",
              help="Git revision to run: branch, tag, full or abbreviated commit SHA. "
                   "The default: a git URL's default branch; a local directory as it is.")
@click.option("-P", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter value; repeatable.")
@click.option("--env-manager", default=None, metavar="MANAGER",
              help="How to build the environment: local (more to come).")
@click.option("-b", "--backend", default="local", show_default=True,
              help="Where to run: local or kubernetes.")
@click.option("--backend-config", default=None, metavar="CONFIG",
              help="Backend settings: a JSON/YAML file or inline JSON (see README).")
@click.option("--detach", is_flag=True,
              help="Return once the run is submitted (remote backends); "
                   "'reprun runs show/logs' follow it later.")
@click.option("--dry-run", is_flag=True, help="Print the plan; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@click.option("--strict", is_flag=True, help="Unknown keys in the MLproject file are errors.")
@click.option("--grace-period", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between interrupting the command and killing it.")
@click.option("-q", "--quiet", is_flag=True, help="Only the command's own output.")
def run(uri: str, entry_point: str, version: str | None, params: tuple[str, ...],
        env_manager: str | None, backend: str, backend_config: str | None, detach: bool,
        dry_run: bool, as_json: bool, strict: bool, grace_period: float, quiet: bool) -> int:
    """Run the project at URI: a directory, or a git URL (https, ssh, git@host:org/repo,
    file://), optionally followed by #sub/dir to run a subdirectory of the repository."""
    from runner.params import parse_param_args
    from runner.plan import RunOptions, make_plan, release_plan

    options = RunOptions(
        uri=uri, cwd=Path.cwd(), base_env=dict(os.environ), entry_point=entry_point,
        version=version,
        params=parse_param_args(params), env_manager=env_manager, backend=backend,
        strict=strict, grace_period=grace_period, echo=True,
        backend_config=backend_config, detach=detach,
    )
    plan = make_plan(options)
    if not quiet:
        for warning in plan.project.warnings:
            _say(f"warning: {warning.render()}")
    if dry_run:
        try:
            described = plan.describe()
            if plan.backend != "local":
                from runner.execute import preview

                described["submission"] = preview(plan)
        finally:
            release_plan(plan)
        _print_plan(described, as_json)
        return 0
    from runner.execute import execute

    try:
        record = execute(plan, _store(), (lambda _m: None) if quiet else _say)
    finally:
        release_plan(plan)
    if not quiet and detach:
        _say(f"run {record.run_id} submitted; follow it with 'reprun runs show "
             f"{record.run_id[:8]}' and 'reprun runs logs {record.run_id[:8]}'")
    elif not quiet:
        _say(f"run {record.run_id} {record.status.value} in {record.duration_s:.2f} s "
             f"(reprun runs show {record.run_id[:8]})")
    return run_exit_code(record)


def run_exit_code(record: RunRecord) -> int:
    """0 when the run finished, the command's code when it failed, 128+signal when stopped."""
    import signal

    from runner.record import Status

    if record.status in (Status.FINISHED, Status.RUNNING):
        return 0
    if record.status is Status.KILLED:
        name = record.backend.facts.get("signal", "SIGINT")
        return 128 + int(getattr(signal, str(name), signal.SIGINT))
    return record.exit_code if record.exit_code else EXIT_FAILURE


def _print_plan(plan: dict[str, Any], as_json: bool) -> None:
    if as_json:
        if "submission" in plan:
            import yaml

            plan["submission"] = yaml.safe_load(plan["submission"])
        click.echo(json.dumps(plan, indent=2))
        return
    env = plan["environment"]
    click.echo(f"project:     {plan['project']['name']} ({plan['project']['path']})")
    click.echo(f"entry point: {plan['entry_point']}")
    for name, value in plan["parameters"].items():
        click.echo(f"  {name} = {value}")
    click.echo(f"environment: {env['kind']} via {env['manager']}")
    click.echo(f"backend:     {plan['backend']}")
    click.echo(f"command:     {plan['command']}")
    if "submission" in plan:
        click.echo("---")
        click.echo(plan["submission"], nl=False)


@cli.group()
def runs() -> None:
    """List and inspect recorded runs."""


@runs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-n", "--limit", type=int, default=None, help="Show at most this many runs.")
def runs_list(as_json: bool, limit: int | None) -> int:
    """Recorded runs, newest first."""
    import dataclasses

    summaries = _store().list(limit)
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
    store = _store()
    record = _current(store, run_id)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return 0
    src, env = record.source, record.environment
    lines = [
        ("run", record.run_id), ("status", record.status.value),
        ("exit code", record.exit_code), ("reason", record.reason),
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
        ("started", record.started_at.isoformat()), ("duration", f"{record.duration_s} s"),
        ("outputs", f"{len(record.outputs)} file(s) in {record.output_dir}"),
        ("record", str(store.run_dir(record.run_id))),
    ]
    for key, value in lines:
        if value is not None:
            click.echo(f"{key + ':':<13}{value}")
    return 0


@runs.command("logs")
@click.argument("run_id")
def runs_logs(run_id: str) -> int:
    """The captured output of a run."""
    store = _store()
    record = _current(store, run_id)
    log = store.run_dir(record.run_id) / record.log_file
    if log.is_file():
        with log.open("rb") as handle:
            while chunk := handle.read(65536):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


def _current(store: RunStore, run_id: str) -> RunRecord:
    """The record; a detached run on a remote backend is first brought up to date from there."""
    from backends import remote_backend
    from runner.errors import ReprunError
    from runner.record import Status

    record = store.get(run_id)
    if record.status is not Status.RUNNING or record.runner is not None:
        return record
    backend = remote_backend(record.backend.name)
    if backend is None:
        return record
    try:
        record = backend.refresh(record, store.run_dir(record.run_id))
    except ReprunError as exc:
        _say(f"warning: cannot ask {record.backend.name} about run {record.run_id[:8]}: "
             f"{exc.render()}")
        return record
    store.save(record)
    return record


@cli.command()
@click.argument("run_id")
def cancel(run_id: str) -> int:
    """Stop a running run: a remote run is deleted where it runs; a local one is interrupted."""
    import signal

    from backends import remote_backend
    from runner.process import process_alive

    store = _store()
    record = _current(store, run_id)
    if record.status.done:
        _say(f"run {record.run_id} has already ended: {record.status.value}")
        return 0
    backend = remote_backend(record.backend.name)
    if backend is not None:
        record = backend.cancel_recorded(record, store.run_dir(record.run_id))
        store.save(record)
        _say(f"run {record.run_id} {record.status.value}: {record.reason}")
        return 0
    runner = record.runner
    if runner is not None and process_alive(runner.pid, runner.start_ticks):
        os.kill(runner.pid, signal.SIGTERM)
        _say(f"run {record.run_id}: asked reprun (pid {runner.pid}) to stop it")
    return 0


@runs.command("reindex")
def runs_reindex() -> int:
    """Rebuild the run index from the records."""
    count = _store().reindex()
    _say(f"indexed {count} run(s)")
    return 0


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path())
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(path: Path, strict: bool) -> int:
    """Check the MLproject (and environment file) of the project at PATH."""
    from runner.errors import SpecError
    from runner.spec import load_project

    try:
        project = load_project(path, strict=strict)
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem.render()}")
        return EXIT_USAGE
    for warning in project.warnings:
        click.echo(f"warning: {warning.render()}")
    names = ", ".join(project.spec.entry_points) or "none"
    click.echo(f"ok: {project.name}: entry points {names}; environment {project.env.kind}")
    return 0


@cli.command()
@click.argument("kind", type=click.Choice(["mlproject", "python_env", "run-record",
                                          "kubernetes-config"]),
                default="mlproject")
def schema(kind: str) -> int:
    """Print the JSON Schema of the MLproject format (or python_env, run-record,
    kubernetes-config)."""
    from runner.schemas import render

    click.echo(render(kind), nl=False)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("REPRUN_DEBUG") == "1"
    sys.exit(_invoke(args, debug))


def _invoke(args: list[str], debug: bool) -> int:
    from runner.errors import USER_ERRORS, Interrupted, ReprunError

    try:
        code = cli.main(args=args, prog_name="reprun", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except ReprunError as exc:
        if debug:
            raise
        _say(f"error: {exc.render()}")
        return EXIT_USAGE if isinstance(exc, USER_ERRORS) else EXIT_FAILURE
    except Interrupted as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0
