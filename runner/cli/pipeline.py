"""``reprun run URI -e PIPELINE`` (called by `runner.cli.main.run`) and ``reprun pipeline
resume RUN``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from runner.cli.common import EXIT_FAILURE, run_exit_code, say, store
from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.pipeline.reproduce import Lookup
    from runner.plan import Opened, RunOptions
    from runner.record.store import RunStore
    from runner.record.types import RunRecord
    from runner.reproduce import ReproduceOptions


def maybe_pipeline(options: RunOptions, opened: Opened, parallel: int,
                   force: tuple[str, ...], dry_run: bool, quiet: bool) -> int | None:
    """Run the pipeline ``-e`` names and give the exit code; None when it names no pipeline."""
    spec = opened.project.spec
    name = options.entry_point
    if name not in spec.pipelines or name in spec.entry_points:
        if parallel != 1 or force:
            _close(options, opened)
            raise UsageError(f"--parallel and --force apply to pipelines; '{name}' is not one "
                             "of this project", hint="leave them out, or give -e PIPELINE")
        return None
    from runner.pipeline import Policy, run_pipeline

    if options.detach:
        _close(options, opened)
        raise UsageError(f"--detach does not apply to pipeline '{name}': this reprun starts "
                         "each step when the steps it needs have finished",
                         hint="leave --detach out (steps may still run remotely)")
    if dry_run:
        _close(options, opened)
        pipeline = opened.project.spec.pipelines[options.entry_point]
        click.echo(f"pipeline: {options.entry_point} ({opened.project.name})")
        for name, step in pipeline.steps.items():
            values = " ".join(f"{k}={v}" for k, v in step.parameters.items())
            click.echo(f"  {name}: {step.entry_point} {values}".rstrip())
        return 0
    record = run_pipeline(options, opened, Policy(parallel, force), store(),
                          (lambda _m: None) if quiet else say)
    return _report(record, quiet)


def pipeline_lines(record: RunRecord) -> list[tuple[str, str | None]]:
    """The lines of 'runs show' that only a pipeline run has: each step and its run."""
    info = record.pipeline
    if record.kind != "pipeline" or info is None:
        return []
    lines: list[tuple[str, str | None]] = [("pipeline", f"{info.name}, {len(info.steps)} steps"
                                            + (f", resumed {info.resumed}x" if info.resumed
                                               else ""))]
    for step in info.steps:
        state = step.status.value if step.status else "not run"
        run = f" run {step.run_id[:8]}" if step.run_id else ""
        reused = f", reused {step.reused_from[:8]}" if step.reused_from else ""
        needs = f" after {', '.join(step.needs)}" if step.needs else ""
        why = f": {step.reason}" if step.reason and step.status is not None and (
            step.status.value != "FINISHED") else ""
        lines.append(("step", f"{step.name} ({step.entry_point}{needs}): {state}{run}"
                              f"{reused}{why}"))
    return lines


def _close(options: RunOptions, opened: Opened) -> None:
    from runner.source.checkout import release

    if opened.resolving is not None:
        opened.resolving.cancel()
    release(opened.checkout, options.base_env)


def _report(record: RunRecord, quiet: bool) -> int:
    if not quiet:
        steps = record.pipeline.steps if record.pipeline else []
        reused = sum(1 for s in steps if s.reused_from is not None)
        why = f": {record.reason}" if record.reason else ""
        say(f"pipeline run {record.run_id} {record.status.value} in {record.duration_s:.2f} s, "
            f"{len(steps)} steps ({reused} reused){why} (reprun runs show {record.run_id[:8]})")
    return run_exit_code(record)


@click.group()
def pipeline() -> None:
    """Pipeline runs: graphs of steps (docs/pipelines.md)."""


@pipeline.command()
@click.argument("run_id", metavar="RUN")
@click.option("--parallel", default=None, type=click.IntRange(min=1),
              help="Run up to N independent steps at once (default: as recorded).")
@click.option("-q", "--quiet", is_flag=True, help="Only the commands' own output.")
def resume(run_id: str, parallel: int | None, quiet: bool) -> int:
    """Continue pipeline run RUN where it stopped: its FINISHED steps are kept, the others run
    (reused when unchanged)."""
    from runner.pipeline import Policy, resume_pipeline

    runs = store()
    record = runs.reconcile(runs.get(run_id))
    policy = None
    if parallel is not None and record.pipeline is not None:
        recorded = record.pipeline.options
        policy = Policy(parallel, tuple(recorded.get("force", ())))
    final = resume_pipeline(record, runs, dict(os.environ),
                            (lambda _m: None) if quiet else say, policy)
    return _report(final, quiet)


def reproduce_steps(pipeline: RunRecord, lookup: Lookup, options: ReproduceOptions,
                    runs_store: RunStore, check: bool, quiet: bool) -> int:
    """``reprun reproduce PIPELINE_RUN [--check]``: each step reproduced, one line each; 0 when
    every step FINISHED (and, with --check, its outputs came out identical)."""
    from runner.pipeline.reproduce import reproduce_pipeline

    results = reproduce_pipeline(pipeline, options, runs_store, lookup,
                                 (lambda _m: None) if quiet else say)
    good = 0
    for result in results:
        new = result.record
        if new is None:
            say(f"step {result.step}: not reproduced: {result.reason}")
            continue
        rep = new.reproduction.check if new.reproduction else None
        outputs = (f"outputs identical ({len(new.outputs)} file(s))" if result.identical
                   else "outputs " + "; ".join(f"{what}: {', '.join(paths)}" for what, paths in (
                       ("different", rep.different if rep else []),
                       ("missing", rep.missing if rep else []),
                       ("extra", rep.extra if rep else [])) if paths))
        finished = new.status.value == "FINISHED"
        good += finished and (result.identical or not check)
        why = f": {new.reason}" if new.reason and not finished else ""
        say(f"step {result.step}: run {new.run_id[:8]} reproduces {(result.original or '')[:8]}:"
            f" {new.status.value}{why}, {outputs}")
    identical = sum(1 for r in results if r.identical)
    say(f"pipeline run {pipeline.run_id[:8]} reproduced: {len(results)} steps, {identical} with "
        f"identical outputs")
    return 0 if good == len(results) else EXIT_FAILURE
