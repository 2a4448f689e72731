"""Listing the runs of a store: from the index, reading only what is shown.

A listing reads the index rows it shows (a page of the newest runs, or of the runs sorted by a
metric through the index on ``metrics(name, last)``), and the records of only two kinds of runs
first: those still RUNNING (found through the index on ``runs(status)``: their record is newer
than their row, or their reprun is gone and they are marked FAILED) and those in the store's
journal (`runner.record.journal`: runs whose row the index may be missing, after a full disk or
a crash before the first index update). Those records are written to the index when it can be;
a run whose row could not be written is still listed, from its record. It never lists ``runs/``.

When the index cannot be read at all (a read-only or full store), the same query runs over an
index made in memory from every record.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner.errors import RunNotFoundError
from runner.record.index import (
    LINEAGE_SCHEMA,
    SCHEMA,
    Condition,
    RunSummary,
    more_columns,
    newest,
    query_runs,
    upsert,
)

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord


def list_runs(store: RunStore, limit: int | None, where: Condition | None,
              sort: Sequence[tuple[str, bool]], details: bool,
              fields: Sequence[str] | None) -> list[RunSummary]:
    """What `RunStore.list` answers."""
    try:
        return _from_index(store, limit, where, sort, details, fields)
    except (sqlite3.OperationalError, OSError):
        store.close()
    return _from_records(store, limit, where, sort, details, fields)


def _from_index(store: RunStore, limit: int | None, where: Condition | None,
                sort: Sequence[tuple[str, bool]], details: bool,
                fields: Sequence[str] | None) -> list[RunSummary]:
    if not store.index_path.exists():
        store.reindex()
    with store.transaction() as db:
        running = [row[0] for row in db.execute("SELECT run_id FROM runs WHERE status = ?",
                                                ("RUNNING",))]
    missed = _refresh(store, list(dict.fromkeys([*running, *store.journal.run_ids()])),
                      details, fields)
    plain = where is None and not sort
    more = len(missed) if plain and limit is not None and limit >= 0 else 0
    with store.transaction() as db:
        found = query_runs(db, None if limit is None else limit + more, where, sort, details,
                           fields)
    if not (missed and plain):
        return found  # filtered and sorted runs come from the index
    merged = {row.run_id: row for row in found}
    merged.update((s.run_id, s) for s in missed)  # a run the index could not take is listed
    return newest(list(merged.values()), limit)


def _refresh(store: RunStore, run_ids: list[str], details: bool,
             fields: Sequence[str] | None) -> list[RunSummary]:
    """Read the records of ``run_ids`` (reconciled) into the index; the summaries of those the
    index could not take. A run without a record (not started yet, or never) is skipped."""
    missed = []
    for run_id in run_ids:
        try:
            record = store.reconcile(store.load(run_id))
        except RunNotFoundError:
            continue
        if not store.update_index(record):
            missed.append(summary(record, details, fields))
    return missed


def summary(record: RunRecord, details: bool, fields: Sequence[str] | None) -> RunSummary:
    """The record's row of a listing (with its parameters and metrics, those ``fields`` name,
    when ``details``)."""
    row = RunSummary(
        record.run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
        record.project.name, record.entry_point, record.exit_code, record.backend.name,
        *more_columns(record))
    if not details:
        return row

    def chosen(kind: str, name: str) -> bool:
        return fields is None or f"{kind}.{name}" in fields

    return row._replace(
        params={k: v for k, v in record.parameters.items() if chosen("params", k)},
        metrics={k: m.last for k, m in record.metrics.items() if chosen("metrics", k)})


def _from_records(store: RunStore, limit: int | None, where: Condition | None,
                  sort: Sequence[tuple[str, bool]], details: bool,
                  fields: Sequence[str] | None) -> list[RunSummary]:
    memory = sqlite3.connect(":memory:")
    try:
        memory.executescript(SCHEMA + LINEAGE_SCHEMA)
        for run_id in store.run_ids():
            with contextlib.suppress(RunNotFoundError):
                upsert(memory, store.reconcile(store.load(run_id)))
        return query_runs(memory, limit, where, sort, details, fields)
    finally:
        memory.close()
