"""``reprun sweep``: many runs of one project over a grid, a random sample or a search."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner.cli.common import EXIT_FAILURE, say, store
from runner.cli.main import run as run_command
from runner.cli.main import tracking_asked

if TYPE_CHECKING:
    from runner.sweep.record import Goal, SweepRecord
    from runner.sweep.store import SweepStore

SUBCOMMANDS = ("show", "resume", "list")
# The options of 'reprun run' a sweep's trials take as they are.
NOT_SHARED = {"uri", "params", "detach", "dry_run", "as_json", "quiet", "parallel", "force"}


class _SweepGroup(click.Group):
    """``reprun sweep URI ...`` starts a sweep; ``reprun sweep show|resume|list`` are commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            raise click.UsageError("give the project to sweep (reprun sweep URI -P NAME=SPEC...)"
                                   ", or show, resume or list", ctx)
        if args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("reprun sweep", "URI -P NAME=SPEC... [OPTIONS] | show SWEEP | "
                                              "resume SWEEP | list")


class _StartCommand(click.Command):
    """``reprun sweep URI``: the group's default command, shown as such."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("reprun sweep", "URI -P NAME=SPEC... [OPTIONS]")


@click.group(cls=_SweepGroup)
def sweep() -> None:
    """Many runs of the project at URI over a grid of values (the default), a random sample
    (--random N) or a search (--optimize METRIC:min --trials N), --parallel N at a time.

    'reprun sweep URI --help' lists the options of a sweep; see docs/sweeps.md for the SPEC
    syntax (a,b,c  start:stop:step  a..b  'uniform(a,b)'  'loguniform(a,b)'  'choice(a,b)'
    and =TEXT for a literal value)."""


def _sweeps() -> SweepStore:
    from runner.record.home import reprun_home
    from runner.sweep.store import SweepStore

    return SweepStore(reprun_home(os.environ))


@sweep.command("start", cls=_StartCommand, hidden=True,
               params=[p for p in run_command.params if p.name not in NOT_SHARED])
@click.argument("uri")
@click.option("-P", "--param", "params", multiple=True, metavar="NAME=SPEC",
              help="A parameter's values: a,b,c or start:stop:step or a..b (a grid), "
                   "'uniform(a,b)', 'loguniform(a,b)', 'choice(a,b)' (random, optimize); "
                   "=TEXT is TEXT exactly; repeatable.")
@click.option("--random", "random_count", type=click.IntRange(min=1), default=None,
              metavar="N", help="Draw N random trials instead of the whole grid.")
@click.option("--optimize", default=None, metavar="METRIC:min|max",
              help="Search with Optuna (extra reprun[optuna]) for the best value of METRIC, "
                   "e.g. metrics.rmse:min; with --trials N.")
@click.option("--trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --optimize: how many trials.")
@click.option("--max-trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="At most N trials of a grid (a sample drawn with --seed).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="The seed of random draws (default: a new one, recorded).")
@click.option("--metric", default=None, metavar="METRIC:min|max",
              help="Rank trials by this metric (--optimize sets it), e.g. metrics.rmse:min.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials running at once.")
@click.option("--max-failures", type=click.IntRange(min=1), default=None, metavar="N",
              help="Start no more trials once N have failed.")
@click.option("--fail-fast", is_flag=True, help="Start no more trials once one failed.")
@click.option("--verbose", is_flag=True,
              help="Every trial's messages (environment, tracking...), not only its warnings.")
@click.option("--dry-run", is_flag=True, help="Print the trials; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print JSON.")
def start(uri: str, params: tuple[str, ...], random_count: int | None, optimize: str | None,
          trials: int | None, max_trials: int | None, seed: int | None, metric: str | None,
          parallel: int, max_failures: int | None, fail_fast: bool, verbose: bool,
          dry_run: bool, as_json: bool, **run_options: Any) -> int:
    """Run the project at URI once per trial, --parallel N at a time; each trial is an
    ordinary run (its record has the sweep's id and the trial's index). Every option of
    'reprun run' but --detach applies to every trial."""
    from runner.plan import RunOptions, release_plan
    from runner.sweep.run import SweepRequest, parse_goal, prepare, run_sweep
    from runner.sweep.spec import parse_specs

    mode, goal_text = _mode(random_count, optimize, trials, max_trials, metric)
    name: str | None = None
    goal: Goal = "min"
    if goal_text:
        name, goal = parse_goal(goal_text, "--optimize" if optimize else "--metric")
    tracking = tracking_asked(run_options.pop("tracking_uri"),
                              run_options.pop("experiment_name"),
                              run_options.pop("experiment_id"), run_options.pop("run_name"),
                              run_options.pop("log_outputs"))
    options = RunOptions(uri=uri, cwd=Path.cwd(), base_env=dict(os.environ), echo=False,
                         tracking=tracking, **run_options)
    request = SweepRequest(options=options, specs=parse_specs(params), mode=mode,
                           count=random_count or trials, max_trials=max_trials, seed=seed,
                           metric=name, goal=goal, parallel=parallel,
                           max_failures=1 if fail_fast else max_failures)
    if not dry_run:
        store().check_writable()
    plan, record = prepare(request)
    try:
        if dry_run:
            _print_trials(record, as_json)
            return 0
        sweeps = _sweeps()
        sweeps.save(record)
        say(f"sweep {record.sweep_id}: {_size(record)} of {record.project}, "
            f"{parallel} at a time (reprun sweep show {record.sweep_id})")
        final = run_sweep(plan, record, store(), sweeps, say, verbose=verbose,
                          live=sys.stderr.isatty())
    finally:
        release_plan(plan)
    return _report(final)


def _mode(random_count: int | None, optimize: str | None, trials: int | None,
          max_trials: int | None, metric: str | None) -> tuple[Any, str | None]:
    if random_count and optimize:
        raise click.UsageError("give --random N or --optimize, not both")
    if optimize:
        if not trials:
            raise click.UsageError("--optimize needs --trials N (how many trials to run)")
        if metric:
            raise click.UsageError("--optimize names the metric; leave out --metric")
        return "optimize", optimize
    if trials:
        raise click.UsageError("--trials goes with --optimize; a random search takes --random N")
    if random_count and max_trials:
        raise click.UsageError("--max-trials caps a grid; with --random N, N is the number")
    return ("random" if random_count else "grid"), metric


def _size(record: SweepRecord) -> str:
    count = record.spec.trials if record.spec.mode == "optimize" else len(record.trials)
    spec = record.spec
    seeded = spec.mode != "grid" or spec.max_trials is not None  # a plain grid draws nothing
    seed = f", seed {spec.seed}" if seeded else ""
    return f"{count} trial{'s' if count != 1 else ''} ({spec.mode}{seed})"


def _print_trials(record: SweepRecord, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"project": record.project, "mode": record.spec.mode,
                               "seed": record.spec.seed,
                               "trials": [t.params for t in record.trials]}, indent=2))
        return
    if record.spec.mode == "optimize":
        click.echo(f"{record.spec.trials} trials chosen one by one by Optuna "
                   f"(seed {record.spec.seed}) over: {', '.join(record.spec.params)}")
        return
    names = list(record.trials[0].params) if record.trials else []
    rows = [["TRIAL", *names]] + [[str(t.index), *(t.params[n] for n in names)]
                                  for t in record.trials]
    _table(rows)
    click.echo(f"{_size(record)}", err=True)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    click.echo("\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()
                         for row in rows))


def _report(record: SweepRecord) -> int:
    from runner.record.types import Status
    from runner.sweep.driver import best_trial

    counts = {s: sum(1 for t in record.trials if t.status is s) for s in Status}
    best = best_trial(record)
    line = (f"sweep {record.sweep_id} {record.status.value}: {counts[Status.FINISHED]} finished, "
            f"{counts[Status.FAILED] + counts[Status.UNKNOWN]} failed, "
            f"{counts[Status.KILLED]} killed, "
            f"{sum(1 for t in record.trials if t.status is None)} not run")
    if best is not None and best.value is not None:
        line += f"; best {record.spec.metric}={best.value:.6g} (trial {best.index}, run " \
                f"{(best.run_id or '')[:8]})"
    say(line + (f"; {record.reason}" if record.reason else ""))
    if record.status is Status.KILLED:
        return 143 if record.reason and "SIGTERM" in record.reason else 130
    return 0 if record.status is Status.FINISHED else EXIT_FAILURE


@sweep.command("resume")
@click.argument("sweep_id", metavar="[SWEEP]", required=False)
@click.option("--reuse", is_flag=True,
              help="Take the outputs of a FINISHED run with the same code, environment and "
                   "data instead of running a trial again.")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="Trials running at once (default: as the sweep was started).")
@click.option("--verbose", is_flag=True, help="Every trial's messages.")
def resume(sweep_id: str | None, reuse: bool, parallel: int | None, verbose: bool) -> int:
    """Run the trials of an interrupted (or failed) sweep that did not finish (SWEEP: an id or
    its start; default: the newest sweep)."""
    from runner.sweep.exclusive import taken

    sweeps = _sweeps()
    chosen = sweeps.resolve_id(sweep_id) if sweep_id else sweeps.newest().sweep_id
    with taken(sweeps.directory(chosen), chosen):
        _stop_left_running(sweeps, chosen)
        return _resume(sweeps, sweeps.get(chosen), reuse, parallel, verbose)


def _stop_left_running(sweeps: SweepStore, sweep_id: str) -> None:
    """The trials' processes a killed sweep left running, stopped (and said)."""
    from runner.sweep.exclusive import stop_left_running

    count = stop_left_running(sweeps.load(sweep_id), store())
    if count:
        say(f"sweep {sweep_id}: stopped {count} process{'es' if count != 1 else ''} of its "
            "trials that its killed reprun process left running")


def _resume(sweeps: SweepStore, record: SweepRecord, reuse: bool, parallel: int | None,
            verbose: bool) -> int:
    import dataclasses

    from runner.plan import make_plan, release_plan
    from runner.record.types import Status
    from runner.sweep.run import resumable, resume_options, run_sweep
    from runner.sweep.spec import check_trials, probe

    indexes = resumable(record)
    store().check_writable()
    options = resume_options(record, dict(os.environ), reuse)
    spec_params = dict(p.partition("=")[::2] for p in record.spec.params)
    plan = make_plan(dataclasses.replace(options, params=probe(spec_params)))
    try:  # the project may have changed since: the trials left must still fit it
        check_trials(plan.entry, [record.trials[i].params for i in indexes], options.cwd)
    except BaseException:
        release_plan(plan)
        raise
    spec = record.spec
    if parallel is not None:
        spec = spec.model_copy(update={"parallel": parallel})
    record = record.model_copy(update={"spec": spec, "resumed": record.resumed + 1,
                                       "status": Status.RUNNING, "reason": None,
                                       "ended_at": None})
    try:
        say(f"sweep {record.sweep_id}: resuming {len(indexes)} trial"
            f"{'s' if len(indexes) != 1 else ''} of {len(record.trials)}")
        final = run_sweep(plan, record, store(), sweeps, say, indexes, verbose=verbose,
                          live=sys.stderr.isatty())
    finally:
        release_plan(plan)
    return _report(final)


@sweep.command("show")
@click.argument("sweep_id", metavar="[SWEEP]", required=False)
@click.option("--metric", default=None, metavar="METRIC:min|max",
              help="Rank by this metric instead of the sweep's, e.g. metrics.r2:max.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep record, trials ranked.")
def show(sweep_id: str | None, metric: str | None, as_csv: bool, as_json: bool) -> int:
    """The trials of a sweep ranked by its metric, best first (failed and killed last), with
    every metric they reported; SWEEP is an id or its start (default: the newest sweep)."""
    from runner.sweep.driver import ranked
    from runner.sweep.views import ranked_by, show_json

    if as_csv and as_json:
        raise click.UsageError("give --json or --csv, not both")
    sweeps = _sweeps()
    record = sweeps.get(sweep_id) if sweep_id else sweeps.newest()
    _stop_left_running(sweeps, record.sweep_id)
    reported = _reported(record)
    if metric is not None:
        record = ranked_by(record, metric, reported)
    if as_json:
        click.echo(json.dumps(show_json(record), indent=2))
        return 0
    trials = ranked(record)
    names = list(dict.fromkeys(n for t in record.trials for n in t.params))
    chosen = record.spec.metric
    others = sorted({m for values in reported.values() for m in values} - {chosen or ""})
    metrics = [*([chosen] if chosen else []), *others]
    header = ["rank", "trial", "status", *metrics, *names, "run_id"]
    rows = []
    for rank, t in enumerate(trials, 1):
        values = reported.get(t.run_id or "", {})
        if chosen and t.value is not None:
            values = {**values, chosen: t.value}
        rows.append([str(rank), str(t.index), t.status.value if t.status else "PENDING",
                     *(_number(values.get(m), as_csv) for m in metrics),
                     *(t.params.get(n, "") for n in names), t.run_id or ""])
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([header, *rows])
        return 0
    goal = f" (by {chosen}, {record.spec.goal})" if chosen else ""
    click.echo(f"sweep {record.sweep_id} {record.status.value}: {record.project}, "
               f"{record.spec.mode}{goal}" + (f"; {record.reason}" if record.reason else ""))
    shown = [[h.upper() if h in ("rank", "trial", "status", "run_id") else h for h in header]]
    shown += [[*row[:-1], row[-1][:12]] for row in rows]
    _table(shown)
    if not chosen and others:
        say(f"rank the trials with --metric, e.g. --metric metrics.{others[0]}:min")
    return 0


def _number(value: float | None, exact: bool) -> str:
    if value is None:
        return ""
    return repr(value) if exact else f"{value:.6g}"


def _reported(record: SweepRecord) -> dict[str, dict[str, float]]:
    """Run id -> the last value of each metric it reported, from the run index."""
    from runner.sweep.views import reported

    return reported(store(), record)


@sweep.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: id, status, created, mode, trials done and total, metric, "
                   "goal, best value and its run, project.")
def list_sweeps(as_json: bool) -> int:
    """Recorded sweeps, newest first."""
    from runner.sweep.views import list_json

    listed = list_json(_sweeps())
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return 0
    rows = [["SWEEP", "STATUS", "CREATED", "MODE", "TRIALS", "BEST", "PROJECT"]]
    for r in listed:
        best = r["best"]
        best_text = f"{r['metric']}={best['value']:.6g}" if best else "-"
        rows.append([r["sweep_id"], r["status"], r["created_at"][:19].replace("T", " "),
                     r["mode"], f"{r['trials_done']}/{r['trials_total']}", best_text,
                     r["project"]])
    _table(rows)
    return 0
