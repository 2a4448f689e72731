"""The command line. The only place that turns exceptions into messages and exit codes.

Heavy modules (pydantic models, backends, environment builders) are imported inside the commands,
so that ``reprun --help`` starts fast.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from backends import REMOTE_BACKENDS
from runner import __version__
from runner.cli.common import EXIT_FAILURE, EXIT_USAGE, run_exit_code, say, store

if TYPE_CHECKING:
    from runner.plan import Plan
    from runner.tracking.mlflow import TrackingOptions


class _LazyGroup(click.Group):
    """A group whose other commands live in other modules, imported only when used."""

    lazy: ClassVar[dict[str, str]] = {
        "reproduce": "runner.cli.reproduce:reproduce",
        "export": "runner.cli.reproduce:export_cmd", "diff": "runner.cli.reproduce:diff_cmd",
        "runs": "runner.cli.runs:runs", "cancel": "runner.cli.remote:cancel",
        "env": "runner.cli.env:env",
        "sweep": "runner.cli.sweep:sweep", "pipeline": "runner.cli.pipeline:pipeline",
        "ui": "runner.cli.ui:ui", "models": "runner.cli.models:models",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
              help="How to build the environment: uv (default), virtualenv, conda (default for "
                   "conda_env projects) or local.")
@click.option("--conda-channel", "conda_channels", multiple=True, metavar="URL",
              help="A conda channel (name or URL) used instead of conda.yaml's channels; "
                   "repeatable, by priority (mirrors, air-gapped sites).")
@click.option("--refresh", is_flag=True,
              help="Resolve the environment again instead of reusing its cached lock.")
@click.option("--allow-drift", is_flag=True,
              help="With --env-manager uv or virtualenv on a conda_env project: run without "
                   "the conda packages PyPI does not have, and record that they were dropped.")
@click.option("-b", "--backend", default=None,
              help="Where to run: local, docker, kubernetes or slurm (default: docker for "
                   "docker_env projects, else local).")
@click.option("--backend-config", default=None, metavar="CONFIG",
              help="Backend settings: a JSON/YAML file or inline JSON (see docs/kubernetes.md, "
                   "docs/slurm.md).")
@click.option("--detach", is_flag=True,
              help="Return once the run is submitted (remote backends); "
                   "'reprun runs show/logs' follow it later.")
@click.option("--docker-base-image", default=None, metavar="IMAGE",
              envvar="REPRUN_DOCKER_BASE_IMAGE",
              help="With --backend docker or kubernetes: the image to build on for projects "
                   "without docker_env (default python:<version>-slim; env "
                   "REPRUN_DOCKER_BASE_IMAGE); given here, it also replaces docker_env.image "
                   "(recorded).")
@click.option("--keep-container", is_flag=True,
              help="With --backend docker: keep the container after the run (default: remove).")
@click.option("--dry-run", is_flag=True, help="Print the plan; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@click.option("--strict", is_flag=True,
              help="Unknown keys in the MLproject file and undeclared -P names are errors.")
@click.option("--grace-period", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between interrupting the command and killing it.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="An MLflow tracking server (http[s]://...): reprun creates the MLflow run, "
                   "as mlflow run does (env MLFLOW_TRACKING_URI; see docs/tracking-server.md).")
@click.option("--experiment-name", default=None, metavar="NAME",
              help="The MLflow experiment, created if missing (env MLFLOW_EXPERIMENT_NAME).")
@click.option("--experiment-id", default=None, metavar="ID",
              help="The MLflow experiment by id (env MLFLOW_EXPERIMENT_ID).")
@click.option("--run-name", default=None, metavar="NAME", help="The MLflow run's name.")
@click.option("--log-outputs", is_flag=True,
              help="With a tracking server: upload the output files as artifacts too.")
@click.option("--reuse", is_flag=True,
              help="If a FINISHED run had the same code, entry point, command, lock, backend and "
                   "input data, take its outputs instead of running.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="With -e PIPELINE: run up to N independent steps at once.")
@click.option("--force", "force", multiple=True, metavar="STEP|all",
              help="With -e PIPELINE: run this step (or all) even if it is unchanged.")
@click.option("-q", "--quiet", is_flag=True, help="Only the command's own output.")
def run(uri: str, entry_point: str, version: str | None, params: tuple[str, ...],
        env_manager: str | None, conda_channels: tuple[str, ...], refresh: bool,
        allow_drift: bool, backend: str | None, backend_config: str | None, detach: bool,
        docker_base_image: str | None, keep_container: bool, dry_run: bool, as_json: bool,
        strict: bool, grace_period: float, reuse: bool, tracking_uri: str | None,
        experiment_name: str | None, experiment_id: str | None, run_name: str | None,
        log_outputs: bool, parallel: int, force: tuple[str, ...], quiet: bool) -> int:
    """Run the project at URI: a directory, or a git URL (https, ssh, git@host:org/repo,
    file://), optionally followed by #sub/dir to run a subdirectory of the repository.
    -e names an entry point, a script, or a pipeline of the MLproject (docs/pipelines.md)."""
    from runner.plan import RunOptions, make_plan, open_project, release_plan
    from runner.spec.params import parse_param_args

    options = RunOptions(
        uri=uri, cwd=Path.cwd(), base_env=dict(os.environ), entry_point=entry_point,
        version=version,
        params=parse_param_args(params), env_manager=env_manager, backend=backend,
        strict=strict, grace_period=grace_period, echo=True, refresh=refresh,
        progress_live=not quiet and sys.stderr.isatty(),
        docker_base_image=docker_base_image, keep_container=keep_container,
        replace_env_image=_typed(click.get_current_context(), "docker_base_image"),
        conda_channels=conda_channels, backend_config=backend_config, detach=detach,
        resolve_early=not dry_run, allow_drift=allow_drift, reuse=reuse,
        tracking=tracking_asked(tracking_uri, experiment_name, experiment_id, run_name,
                                log_outputs),
    )
    if not dry_run:
        store().check_writable()  # before resolving or building anything
    opened = open_project(options)
    from runner.cli.pipeline import maybe_pipeline

    code = maybe_pipeline(options, opened, parallel, force, dry_run, quiet)
    if code is not None:
        return code
    plan = make_plan(options, opened)
    if not quiet:
        _say_notices(plan)
    if dry_run:
        try:
            described = plan.describe()
            if plan.backend in REMOTE_BACKENDS:
                from runner.execute import preview

                described["submission"] = preview(plan)
        finally:
            release_plan(plan)
        _print_plan(described, as_json)
        return 0
    from runner.execute import execute

    try:
        record = execute(plan, store(), (lambda _m: None) if quiet else say)
    finally:
        release_plan(plan)
    if not quiet and detach:
        say(f"run {record.run_id} submitted; follow it with 'reprun runs show "
            f"{record.run_id[:8]}' and 'reprun runs logs {record.run_id[:8]}'")
    elif not quiet:
        why = f": {record.reason}" if record.reason and record.status.value != "FINISHED" else ""
        say(f"run {record.run_id} {record.status.value} in {record.duration_s:.2f} s{why} "
             f"(reprun runs show {record.run_id[:8]})")
        if record.mlflow is not None and record.mlflow.run_url:
            say(f"mlflow run {record.mlflow.run_id}: {record.mlflow.run_url}")
    return run_exit_code(record)


def _typed(ctx: click.Context, name: str) -> bool:
    """The option was typed on the command line (not taken from its variable)."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _say_notices(plan: Plan) -> None:
    """The project's warnings, parameters passed on undeclared, a conda.yaml converted."""
    from runner.source.checkout import shown_in_source

    for warning in plan.project.warnings:
        shown, origin = (None, "") if warning.file is None else shown_in_source(plan.checkout,
                                                                                warning.file)
        say(f"warning: {warning.render(shown, origin)}")
    if plan.params.extras:
        names = ", ".join(f"'{n}'" for n in plan.params.extras)
        say(f"notice: {names} not declared by the entry point; passed on as "
            f"{' '.join('--' + n for n in plan.params.extras)} (as MLflow does)")
    if plan.project.env.conversion is not None:
        from runner.envs.conda import summary

        for line in summary(plan.project.env.conversion):
            say(line)


def tracking_asked(uri: str | None, experiment_name: str | None, experiment_id: str | None,
                   run_name: str | None, log_outputs: bool) -> TrackingOptions | None:
    """The MLflow tracking asked for; None (and nothing imported) when none is named."""
    if not (uri or os.environ.get("MLFLOW_TRACKING_URI") or experiment_name or experiment_id):
        return None
    from runner.tracking.mlflow import tracking_options

    return tracking_options(os.environ, uri, experiment_name, experiment_id, run_name,
                            log_outputs)


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
    if "converted_from" in env:
        python = f" (python {env['python']})" if env["python"] else ""
        click.echo(f"  from PyPI:  {', '.join(env['requirements']) or 'nothing'}{python}")
        for entry in env["conversion"]:
            if entry["pypi"] is None:
                click.echo(f"    {entry['conda']}: {entry['note']}")
            elif entry["note"]:
                click.echo(f"    {entry['conda']} -> {entry['pypi']} ({entry['note']})")
    click.echo(f"backend:     {plan['backend']}")
    click.echo(f"command:     {plan['command']}")
    if "docker" in plan:
        _print_container(plan["docker"])
    if "submission" in plan:
        click.echo("---")
        click.echo(plan["submission"], nl=False)


def _print_container(docker: dict[str, Any]) -> None:
    click.echo("container:")
    click.echo(f"  image:       {docker['image']}")
    click.echo(f"  workdir:     {docker['workdir']}")
    click.echo(f"  command:     {json.dumps(docker['command'])}")
    for mount in docker["mounts"]:
        click.echo(f"  mount:       {mount}")
    click.echo(f"  environment: {', '.join(docker['environment'])} (names only)")
    click.echo(f"  network:     {docker['network']}")
    for key in ("gpus", "shm_size"):
        if docker[key] is not None:
            click.echo(f"  {key + ':':<12} {docker[key]}")
    click.echo(f"  remove:      {'no (--keep-container)' if docker['keep_container'] else 'yes'}")
    click.echo("Dockerfile:")
    for line in docker["dockerfile_text"].splitlines():
        click.echo(f"  {line}")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path())
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--backend-config", default=None, metavar="CONFIG",
              help="Check this Kubernetes backend config (a JSON/YAML file or inline JSON) "
                   "instead of a project.")
def validate(path: Path, strict: bool, backend_config: str | None) -> int:
    """Check the MLproject (and environment file) of the project at PATH, or a backend
    config; every problem is printed."""
    from runner.errors import SpecError
    from runner.spec.project import load_project

    if backend_config is not None:
        return _validate_backend_config(backend_config)
    try:
        project = load_project(path, strict=strict)
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem.render()}")
        return EXIT_USAGE
    for warning in project.warnings:
        click.echo(f"warning: {warning.render()}")
    names = ", ".join(project.spec.entry_points) or "none"
    pipelines = ", ".join(project.spec.pipelines)
    also = f"; pipelines {pipelines}" if pipelines else ""
    click.echo(f"ok: {project.name}: entry points {names}{also}; environment {project.env.kind}")
    return 0


def _validate_backend_config(value: str) -> int:
    from backends.kubernetes.manifest import check_config
    from runner.errors import SpecError

    try:
        summary = check_config(value, Path.cwd())
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem.render()}")
        return EXIT_USAGE
    click.echo(f"ok: {summary}")
    return 0


@cli.command()
@click.argument("kind", type=click.Choice(["mlproject", "python_env", "conda_env", "run-record",
                                          "kubernetes-config", "slurm-config",
                                          "sweep-record", "model-version"]),
                default="mlproject")
def schema(kind: str) -> int:
    """Print the JSON Schema of the MLproject format (or python_env, conda_env, run-record,
    kubernetes-config, slurm-config, sweep-record, model-version)."""
    from runner.schemas import render

    click.echo(render(kind), nl=False)
    return 0




def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("REPRUN_DEBUG") == "1"
    sys.exit(_invoke(args, debug))


def _not_utf8(args: list[str]) -> str | None:
    """Why an argument cannot be used (bytes that are not UTF-8 cannot be recorded), or None."""
    for number, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            return (f"argument {number} ('{shown}') is not UTF-8 text (run records are UTF-8 "
                    "JSON); pass it in UTF-8")
    return None


def _invoke(args: list[str], debug: bool) -> int:
    from runner.errors import USER_ERRORS, Interrupted, ReprunError

    bad = _not_utf8(args)
    if bad is not None:
        say(f"error: {bad}")
        return EXIT_USAGE
    try:
        code = cli.main(args=args, prog_name="reprun", standalone_mode=False)
    except click.UsageError as exc:
        if debug:
            raise
        where = exc.ctx.command_path if exc.ctx is not None else "reprun"
        message = " ".join(exc.format_message().split()).rstrip(".")
        say(f"error: {message}; see '{where} --help'")
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except ReprunError as exc:
        if debug:
            raise
        say(f"error: {exc.render()}")
        return EXIT_USAGE if isinstance(exc, USER_ERRORS) else EXIT_FAILURE
    except OSError as exc:  # a full disk, a read-only or vanished file: one line
        if debug:
            raise
        from runner.nospace import full_error, is_full

        if is_full(exc):
            say(f"error: {full_error(exc, os.environ, 'reprun stopped').render()}")
            return EXIT_FAILURE
        where = f": {exc.filename}" if exc.filename else ""
        say(f"error: {exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Interrupted as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0
