"""``reprun runs delete``: remove recorded runs from the store."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from runner.cli.common import say
from runner.cli.common import store as open_store

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord


@click.command("delete")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--where", "where", default=None, metavar="EXPR",
              help="Delete the runs that match, e.g. \"status = FAILED and "
                   "started < 2026-01-01\" (the language of 'runs list --where').")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--force", is_flag=True, help="Delete runs that registered model versions too (the "
                                            "versions keep their files).")
def runs_delete(run_ids: tuple[str, ...], where: str | None, yes: bool, dry_run: bool,
                force: bool) -> int:
    """Remove runs from the store: their record, log, lock and outputs (a unique prefix of an
    id is enough). A run still running is refused: stop it with 'reprun cancel' first. Runs
    that read a deleted run's outputs keep their record of what they read."""
    from runner.errors import UsageError

    if bool(run_ids) == (where is not None):
        raise UsageError("give the runs to delete or --where, not both" if run_ids
                         else "give the runs to delete (ids) or --where EXPR",
                         hint="see 'reprun runs delete --help'")
    runs = open_store()
    runs.empty_trash()
    records = _chosen(runs, run_ids, where)
    running = [r.run_id[:8] for r in records if not r.status.done]
    if running:
        raise UsageError(f"{', '.join(running)} {'is' if len(running) == 1 else 'are'} still "
                         "running", hint="stop with 'reprun cancel RUN' first (or leave them "
                                         "out of the selection)")
    if not force:
        from runner.models.guard import refuse_model_runs

        refuse_model_runs(runs.home, [r.run_id for r in records])
    for record in records:
        click.echo(f"{record.run_id[:12]}  {record.status.value:<8}  "
                   f"{record.started_at:%Y-%m-%d %H:%M}  {record.project.name} / "
                   f"{record.entry_point}")
    if not records or dry_run:
        say(f"{'no run matches' if not records else f'{len(records)} run(s) would be deleted'}")
        return 0
    if not _confirmed(len(records), yes):
        say("nothing deleted")
        return 1
    for record in records:
        runs.delete(record.run_id)
    say(f"deleted {len(records)} run(s)")
    return 0


def _chosen(runs: RunStore, run_ids: tuple[str, ...], where: str | None) -> list[RunRecord]:
    """The records of the runs named (each id once), or of those ``where`` selects."""
    if where is not None:
        from runner.tracking.query import where_known

        ids = [s.run_id for s in runs.list(where=where_known(runs, where))]
    else:
        ids = list(dict.fromkeys(runs.resolve_id(prefix) for prefix in run_ids))
    return [runs.reconcile(runs.load(run_id)) for run_id in ids]


def _confirmed(count: int, yes: bool) -> bool:
    from runner.errors import UsageError

    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"deleting {count} run(s) needs a confirmation",
                         hint="pass --yes (or --dry-run to see them only)")
    return click.confirm(f"delete these {count} run(s)?", err=True)
