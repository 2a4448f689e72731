"""Commands about recorded runs: ``runs list|show|compare|logs|lineage|reindex`` (``runs delete``
is in `runner.cli.delete`, ``runs sync|push`` in `runner.cli.remote`; ``reproduce``, ``export`` and
``diff`` in `runner.cli.reproduce`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from runner.cli.common import current_record, say, say_refused
from runner.cli.common import store as open_store
from runner.cli.delete import runs_delete
from runner.cli.pipeline import pipeline_lines
from runner.cli.remote import runs_push, runs_sync

if TYPE_CHECKING:
    from runner.record.index import RunSummary
    from runner.record.store import RunStore
    from runner.record.types import InputInfo, RunRecord


@click.group()
def runs() -> None:
    """List and inspect recorded runs."""


@runs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (the shown columns).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None,
              help="Show at most this many runs.")
@click.option("-c", "--columns", multiple=True, metavar="FIELDS",
              help="Columns to show after the run id, comma-separated: params.NAME, "
                   "metrics.NAME, status, started, duration, exit_code, project, entry_point, "
                   "backend, sweep, trial, kind (run or pipeline), parent.")
@click.option("--sort", multiple=True, metavar="FIELDS",
              help="Sort by these fields (a leading '-' sorts descending: --sort=-metrics.r2); "
                   "runs without a value come last.")
@click.option("--where", "where", default=None, metavar="EXPR",
              help="Only the runs that match, e.g. \"metrics.rmse < 0.8 and params.alpha >= 0.2 "
                   "and status = FINISHED\" (and, or, not, parentheses, = != < <= > >=).")
def runs_list(as_json: bool, as_csv: bool, limit: int | None, columns: tuple[str, ...],
              sort: tuple[str, ...], where: str | None) -> int:
    """Recorded runs, newest first (or as --sort says), with chosen columns and a filter."""
    from runner.tracking.query import CSV_DEFAULT, list_runs, summary_json, write_csv

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    runs_store = open_store()
    summaries, chosen = list_runs(runs_store, where, sort, columns, limit,
                                  details=as_json or as_csv)
    say_refused(runs_store)
    if as_json:
        click.echo(json.dumps([summary_json(s, chosen) for s in summaries], indent=2))
    elif as_csv:
        write_csv(summaries, chosen or list(CSV_DEFAULT), sys.stdout)
        sys.stdout.flush()
    elif chosen:
        _print_columns(summaries, chosen)
    else:
        _print_default(summaries)
    return 0


def _print_columns(summaries: list[RunSummary], chosen: list[str]) -> None:
    from runner.tracking.query import field_value

    table = [["RUN ID", *(name.upper() if "." not in name else name for name in chosen)]]
    for s in summaries:
        table.append([s.run_id[:12], *(_cell(field_value(s, name)) for name in chosen)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    click.echo("\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                         for row in table))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print_default(summaries: list[RunSummary]) -> None:
    lines = [f"{'RUN ID':<12}  {'STATUS':<8}  {'STARTED':<19}  {'DURATION':>9}  {'EXIT':>4}  "
             "PROJECT / ENTRY POINT"]
    for s in summaries:
        duration = f"{s.duration_s:.2f}s" if s.duration_s is not None else "-"
        code = "-" if s.exit_code is None else str(s.exit_code)
        started = s.started_at[:19].replace("T", " ")
        lines.append(f"{s.run_id[:12]:<12}  {s.status:<8}  {started:<19}  {duration:>9}  "
                     f"{code:>4}  {s.project} / {s.entry_point}"
                     f"{' (pipeline)' if s.kind == 'pipeline' else ''}")
    click.echo("\n".join(lines))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--where", "where", default=None, metavar="EXPR",
              help="Compare the runs that match (as in 'runs list --where'), besides RUN...")
@click.option("--sort", multiple=True, metavar="FIELDS",
              help="With --where: which runs come first (as in 'runs list --sort').")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="With --where: compare at most this many runs.")
@click.option("--better", multiple=True, metavar="METRIC:min|max",
              help="Which value of a metric is best, e.g. --better metrics.r2:max (default: "
                   "the MLproject's metrics.better, else guessed from the name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_compare(run_ids: tuple[str, ...], where: str | None, sort: tuple[str, ...],
                 limit: int, better: tuple[str, ...], as_json: bool) -> int:
    """Runs side by side: parameters and metrics, those that differ first, the best value of
    each metric marked. RUN is a run id or a unique prefix."""
    from runner.errors import UsageError
    from runner.tracking.compare import compare, parse_better, render
    from runner.tracking.query import parse_sort, where_known

    given = parse_better(better)
    runs_store = open_store()
    ids = [runs_store.resolve_id(prefix) for prefix in run_ids]
    if where is not None:
        found = runs_store.list(limit, where=where_known(runs_store, where),
                               sort=parse_sort(sort))
        ids += [s.run_id for s in found]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise UsageError("no runs to compare" if where is None else
                         f"no run matches --where {where!r}",
                         hint="give run ids, or a --where that matches runs")
    result = compare([runs_store.get(run_id) for run_id in ids], given)
    click.echo(json.dumps(result, indent=2) if as_json else render(result))
    return 0


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def runs_show(run_id: str, as_json: bool) -> int:
    """The record of one run (a unique prefix of its id is enough)."""
    runs_store = open_store()
    record = current_record(runs_store, run_id)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return 0
    src, env = record.source, record.environment
    lines = [
        ("run", record.run_id), ("status", record.status.value),
        ("exit code", record.exit_code), ("reason", record.reason),
        ("reproduces", record.reproduces), ("parent", record.parent),
        ("project", f"{record.project.name} ({record.project.uri})"),
        *pipeline_lines(record),
        ("entry point", record.entry_point), ("command", record.command or None),
        ("parameters", ", ".join(f"{k}={v}" for k, v in record.parameters.items()) or "-"),
        ("source", f"{src.uri}{'#' + src.subdirectory if src.subdirectory else ''}"
                   f" ({src.checkout})" if src.uri else None),
        ("version", src.requested_version),
        ("git", f"{src.git_commit or '-'}{' (dirty)' if src.git_dirty else ''}"
                f"{' on ' + src.git_branch if src.git_branch else ''}"),
        ("submodules", ", ".join(f"{s.path}@{s.commit[:12]}" for s in src.submodules) or None),
        ("environment", f"{env.kind} via {env.manager}, python {env.python_version or '-'}, "
                        f"{len(env.packages)} packages" if record.kind == "run" else None),
        ("converted", _conversion_line(record)),
        ("image", _image_line(record)),
        ("started", record.started_at.isoformat()), ("duration", f"{record.duration_s} s"),
        ("reused from", record.reused_from),
        *(("input", _input_line(i)) for i in record.inputs),
        ("outputs", f"{len(record.outputs)} file(s) in {record.output_dir}"),
        ("log", _log_note(record)),
        ("leftovers", _leftovers_note(record)),
        ("metrics", _metrics_line(record)),
        ("mlflow", _mlflow_line(record, runs_store)),
        *_captured_lines(record),
        ("record", str(runs_store.run_dir(record.run_id))),
    ]
    for key, value in lines:
        if value is not None:
            click.echo(f"{key + ':':<13}{value}")
    return 0


def _metrics_line(record: RunRecord) -> str | None:
    if not record.metrics:
        return None
    shown = [f"{name}={m.last:.6g}" + (f" (step {m.step})" if m.step is not None else "")
             for name, m in list(record.metrics.items())[:20]]
    more = f", ... ({len(record.metrics)} in all)" if len(record.metrics) > 20 else ""
    return ", ".join(shown) + more


def _captured_lines(record: RunRecord) -> list[tuple[str, str]]:
    from runner.record.captured import shown_lines

    return shown_lines(record.captured)


def _mlflow_line(record: RunRecord, runs_store: RunStore) -> str | None:
    mlflow = record.mlflow
    if mlflow is None:
        return None
    shown = mlflow.run_url or f"{mlflow.tracking_uri} (no MLflow run yet)"
    if (runs_store.run_dir(record.run_id) / "mlflow-pending.json").is_file():
        shown += " (calls pending: reprun runs sync)"
    return shown


def _conversion_line(record: RunRecord) -> str | None:
    """``from conda: numpy>=1.14.3, torch>=2; not installed: pip, mkl``."""
    env = record.environment
    if env.converted_from is None:
        return None
    installed = ", ".join(c.pypi for c in env.conversion if c.pypi) or "-"
    left_out = ", ".join(c.conda for c in env.conversion if c.pypi is None)
    return f"from {env.converted_from}: {installed}" + (
        f"; not installed: {left_out}" if left_out else "")


def _input_line(info: InputInfo) -> str:
    name = f"{info.name} = {info.path}" if info.kind == "param" else info.path
    if info.digest is None:
        return f"{name} ({info.kind}, missing)"
    what = f"{info.files} files, " if info.type == "directory" else ""
    made = info.produced_by[0] if info.produced_by else None
    by = f", made by run {made.run_id[:8]} ({made.path})" if made else ""
    return f"{name} ({info.kind}, {what}{info.size} bytes, {info.digest[:23]}){by}"


def _log_note(record: RunRecord) -> str | None:
    truncated = record.backend.facts.get("log_truncated")
    return f"truncated: {truncated}" if truncated else None


def _leftovers_note(record: RunRecord) -> str | None:
    count = record.backend.facts.get("stopped_leftover_processes")
    return f"{count} process(es) the command left running were stopped" if count else None


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
    record = current_record(runs_store, run_id)
    log = runs_store.run_dir(record.run_id) / record.log_file
    if note := _log_note(record):
        say(f"warning: this log was {note}; the terminal had all of the output")
    if log.is_file():
        with log.open("rb") as handle:
            while chunk := handle.read(65536):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


@runs.command("lineage")
@click.argument("run_id")
@click.option("--down", is_flag=True,
              help="The runs that read this run's outputs (default: the runs that made its "
                   "inputs).")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON.")
def runs_lineage(run_id: str, down: bool, as_json: bool) -> int:
    """The chain of runs upstream of a run (whose outputs it read), or downstream with --down."""
    import dataclasses

    from runner.tracking.lineage import lineage, render

    runs_store = open_store()
    tree = lineage(runs_store, runs_store.resolve_id(run_id), down=down)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(tree), indent=2))
    else:
        click.echo("\n".join(render(tree)))
    return 0


@runs.command("reindex")
def runs_reindex() -> int:
    """Rebuild the run index from the records."""
    runs_store = open_store()
    count = runs_store.reindex()
    say_refused(runs_store)
    say(f"indexed {count} run(s)")
    return 0


runs.add_command(runs_delete)
runs.add_command(runs_sync)
runs.add_command(runs_push)
