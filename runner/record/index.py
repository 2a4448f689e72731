"""The SQLite index of the run store: its schema, a record's rows, and the queries that list runs.

The index only summarises the records (a row per run, its parameters and metrics, its outputs by
digest, the links from its inputs to the runs that wrote them, its reuse key) so that runs are
filtered and sorted quickly; `runner.record.store.RunStore` owns the connection and rebuilds the
index from the records whenever it is missing, damaged or of another version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from runner.record.types import RunRecord

Pairs = list[tuple[str, str]]
Triples = list[tuple[str, str, str]]
Names = list[str]

COLUMNS = ("run_id", "status", "started_at", "duration_s", "project", "entry_point", "exit_code",
           "backend", "sweep", "trial", "kind", "parent")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, started_at TEXT NOT NULL,
    duration_s REAL, project TEXT, entry_point TEXT, exit_code INTEGER, backend TEXT,
    sweep TEXT, trial INTEGER, kind TEXT, parent TEXT
);
CREATE INDEX IF NOT EXISTS runs_newest ON runs (started_at DESC, run_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, number REAL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, name TEXT NOT NULL, last REAL NOT NULL, step INTEGER,
    min REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_by_value ON metrics (name, last);
"""
# Version 2: parameters and metrics; outputs by digest, lineage links and reuse keys.
# Version 3: both of those in one index. Version 4: the sweep and trial of each run.
# Version 5: the kind (run, pipeline) and parent of each run; indexes for a page of the newest
# runs, the RUNNING runs, and runs by a metric. Version 6: records whose run_id is not their
# folder's name are left out (an index that held one is made again).
INDEX_VERSION = 6
LINEAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    run_id TEXT NOT NULL, path TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (run_id, path)
);
CREATE INDEX IF NOT EXISTS outputs_digest ON outputs (digest);
CREATE TABLE IF NOT EXISTS links (
    consumer TEXT NOT NULL, producer TEXT NOT NULL, input TEXT NOT NULL, path TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS links_producer ON links (producer);
CREATE INDEX IF NOT EXISTS links_consumer ON links (consumer);
CREATE TABLE IF NOT EXISTS reuse (run_id TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reuse_key ON reuse (key);
"""
# Where the index holds a run (a run read by others keeps their links: they say what they read).
INDEXED_BY_RUN = (("runs", "run_id"), ("params", "run_id"), ("metrics", "run_id"),
                  ("outputs", "run_id"), ("links", "consumer"), ("reuse", "run_id"))
# What a field of `field_sql` is, in SQL; a parameter or metric is looked up by its primary key.
RUN_FIELDS = {
    "run_id": "runs.run_id", "id": "runs.run_id", "status": "runs.status",
    "started": "runs.started_at", "started_at": "runs.started_at",
    "duration": "runs.duration_s", "duration_s": "runs.duration_s", "project": "runs.project",
    "entry_point": "runs.entry_point", "exit_code": "runs.exit_code", "backend": "runs.backend",
    "sweep": "runs.sweep", "trial": "runs.trial", "kind": "runs.kind", "parent": "runs.parent",
}
PARAM_SQL = "(SELECT {col} FROM params p WHERE p.run_id = runs.run_id AND p.name = ?)"
METRIC_SQL = "(SELECT last FROM metrics m WHERE m.run_id = runs.run_id AND m.name = ?)"
ID_CHUNK = 500
SCAN_CHUNKS = 10  # more runs than this many chunks: one scan of the table is quicker


class Condition(Protocol):
    """A filter on runs (`runner.tracking.query` makes them) as SQL over `field_sql`."""

    def sql(self, resolve: FieldSql) -> tuple[str, list[Any]]: ...


class FieldSql(Protocol):
    def __call__(self, name: str, numeric: bool) -> tuple[str, list[Any]]: ...


def field_sql(name: str, numeric: bool) -> tuple[str, list[Any]]:
    """The SQL expression of a field of a run and its arguments: a column of ``runs``,
    ``params.NAME`` (its value as a number when ``numeric``, else as text) or ``metrics.NAME``
    (the last value); KeyError for an unknown field."""
    kind, _, rest = name.partition(".")
    if kind == "params" and rest:
        return PARAM_SQL.format(col="number" if numeric else "value"), [rest]
    if kind == "metrics" and rest:
        return METRIC_SQL, [rest]
    return RUN_FIELDS[name], []


def sort_sql(name: str, alias: str) -> tuple[str, list[Any], str]:
    """How to order by a field: a join (named ``alias``) and its arguments, and the expression
    to order by; a parameter orders by number when it is one, else by text."""
    kind, _, rest = name.partition(".")
    if kind in ("params", "metrics") and rest:
        join = f"LEFT JOIN {kind} {alias} ON {alias}.run_id = runs.run_id AND {alias}.name = ?"
        value = f"COALESCE({alias}.number, {alias}.value)" if kind == "params" else f"{alias}.last"
        return join, [rest], value
    return "", [], RUN_FIELDS[name]


class RunSummary(NamedTuple):
    """One row of the run index, as `reprun runs list` shows it (a named tuple: listing ten
    thousand runs makes ten thousand of them)."""

    run_id: str
    status: str
    started_at: str
    duration_s: float | None
    project: str
    entry_point: str
    exit_code: int | None
    backend: str | None = None
    sweep: str | None = None
    trial: int | None = None
    kind: str = "run"
    parent: str | None = None
    params: Mapping[str, str] = MappingProxyType({})
    metrics: Mapping[str, float] = MappingProxyType({})


def newest(summaries: list[RunSummary], limit: int | None) -> list[RunSummary]:
    """Newest first, as the index orders them."""
    ordered = sorted(sorted(summaries, key=lambda s: s.run_id), key=lambda s: s.started_at,
                     reverse=True)
    return ordered if limit is None or limit < 0 else ordered[:limit]  # as SQL's LIMIT


def upsert(db: sqlite3.Connection, record: RunRecord) -> None:
    run_id = record.run_id
    db.execute(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(COLUMNS))})",
        (run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
         record.project.name, record.entry_point, record.exit_code, record.backend.name,
         *more_columns(record)),
    )
    db.execute("DELETE FROM params WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO params VALUES (?, ?, ?, ?)",
                   [(run_id, k, v, _number(v)) for k, v in record.parameters.items()])
    db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(run_id, k, m.last, m.step, m.min, m.max, m.count)
                    for k, m in record.metrics.items()])
    _upsert_lineage(db, record)


def more_columns(record: RunRecord) -> tuple[str | None, int | None, str, str | None]:
    """The columns after ``backend``: sweep, trial, kind, parent."""
    sweep = record.sweep
    return (*((sweep.id, sweep.trial) if sweep is not None else (None, None)), record.kind,
            record.parent)


def _upsert_lineage(db: sqlite3.Connection, record: RunRecord) -> None:
    """The run's output digests, the runs its inputs came from, and its reuse key.

    An output with the content of one of the run's input files was passed through, not made:
    it is not indexed, so that lineage names the run that made the content."""
    run_id = record.run_id
    for table, column in (("outputs", "run_id"), ("links", "consumer"), ("reuse", "run_id")):
        db.execute(f"DELETE FROM {table} WHERE {column}=?", (run_id,))
    read = {i.digest for i in record.inputs if i.type == "file"}
    db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)",
                   [(run_id, o.path, o.content) for o in record.outputs if o.content not in read])
    db.executemany("INSERT INTO links VALUES (?, ?, ?, ?)",
                   [(run_id, p.run_id, i.name, p.path) for i in record.inputs
                    for p in i.produced_by])
    if record.reuse_key is not None:
        db.execute("INSERT INTO reuse VALUES (?, ?)", (run_id, record.reuse_key))


def _number(text: str) -> float | None:
    """A parameter's value as a finite number, when it is one."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number - number == 0 else None  # not nan or inf


def query_runs(db: sqlite3.Connection, limit: int | None, where: Condition | None,
               sort: Sequence[tuple[str, bool]], details: bool,
               fields: Sequence[str] | None) -> list[RunSummary]:
    if sort and limit is not None and limit >= 0 and _metric(sort[0][0]):
        rows = _by_metric(db, limit, where, sort)
    else:
        query, args = _select(limit, where, sort)
        rows = db.execute(query, args).fetchall()
    return _with_details(db, rows, fields) if details else [RunSummary(*row) for row in rows]


def _metric(field: str) -> str | None:
    kind, _, name = field.partition(".")
    return name if kind == "metrics" and name else None


def _by_metric(db: sqlite3.Connection, limit: int, where: Condition | None,
               sort: Sequence[tuple[str, bool]]) -> list[tuple[Any, ...]]:
    """A page of runs sorted by a metric first, read in the order of the index on
    ``metrics(name, last)``: the runs with the metric, then (when the page is not full) those
    without it, as `_select` orders them."""
    (field, descending), rest = sort[0], sort[1:]
    joins, args, order = _sort_terms(rest, first=1)
    query = (f"SELECT {', '.join(f'runs.{c}' for c in COLUMNS)} FROM metrics s0 "
             f"CROSS JOIN runs ON runs.run_id = s0.run_id{joins} WHERE s0.name = ?")
    args.append(_metric(field))
    condition, where_args = where.sql(field_sql) if where is not None else ("", [])
    if condition:
        query += f" AND ({condition})"
    order = [f"s0.last{' DESC' if descending else ''}", *order, "runs.started_at DESC",
             "runs.run_id"]
    rows = db.execute(f"{query} ORDER BY {', '.join(order)} LIMIT {int(limit)}",
                      [*args, *where_args]).fetchall()
    if len(rows) == limit:
        return rows
    lacking = Lacking(_metric(field) or "", where)
    query, args = _select(limit - len(rows), lacking, rest)
    return rows + db.execute(query, args).fetchall()


class Lacking:
    """The runs without metric ``name`` (that ``where`` selects, if given)."""

    def __init__(self, name: str, where: Condition | None) -> None:
        self.name, self.where = name, where

    def sql(self, resolve: FieldSql) -> tuple[str, list[Any]]:
        text = "NOT EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = runs.run_id AND m.name = ?)"
        if self.where is None:
            return text, [self.name]
        condition, args = self.where.sql(resolve)
        return f"{text} AND ({condition})", [self.name, *args]


def _sort_terms(sort: Sequence[tuple[str, bool]],
                first: int = 0) -> tuple[str, list[Any], list[str]]:
    """The joins, their arguments and the ORDER BY terms of ``sort`` (runs without a value
    last); joins are named s<first>, s<first + 1>..."""
    joins, args, order = "", [], []
    for index, (name, descending) in enumerate(sort, start=first):
        join, join_args, expr = sort_sql(name, f"s{index}")
        joins += f" {join}" if join else ""
        args += join_args
        order.append(f"{expr} IS NULL, {expr}{' DESC' if descending else ''}")
    return joins, args, order


def _select(limit: int | None, where: Condition | None,
            sort: Sequence[tuple[str, bool]]) -> tuple[str, list[Any]]:
    joins, args, order = _sort_terms(sort)
    query = f"SELECT {', '.join(f'runs.{c}' for c in COLUMNS)} FROM runs{joins}"
    if where is not None:
        condition, where_args = where.sql(field_sql)
        query += f" WHERE {condition}"
        args += where_args
    order.append("runs.started_at DESC, runs.run_id")
    query += f" ORDER BY {', '.join(order)}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return query, args


def _with_details(db: sqlite3.Connection, rows: list[tuple[Any, ...]],
                  fields: Sequence[str] | None) -> list[RunSummary]:
    """Summaries of the rows with their parameters and metrics (those ``fields`` name)."""
    params: dict[str, dict[str, str]] = {row[0]: {} for row in rows}
    metrics: dict[str, dict[str, float]] = {row[0]: {} for row in rows}
    for table, column, found in (("params", "value", params), ("metrics", "last", metrics)):
        names = None if fields is None else [
            f[len(table) + 1:] for f in fields if f.startswith(f"{table}.")]
        if names == []:
            continue
        for run_id, name, value in _detail_rows(db, table, column, list(found), names):
            into = found.get(run_id)
            if into is not None:
                into[name] = value
    return [RunSummary._make((*row, params[row[0]], metrics[row[0]])) for row in rows]


def _detail_rows(db: sqlite3.Connection, table: str, column: str, ids: list[str],
                 names: list[str] | None) -> Iterator[tuple[str, str, Any]]:
    """(run_id, name, value) of the runs ``ids``: looked up by key, in chunks, or by a scan of
    the whole table when they are many."""
    by_name = f" AND name IN ({', '.join('?' * len(names))})" if names else ""
    name_args: list[Any] = list(names or [])
    if len(ids) > ID_CHUNK * SCAN_CHUNKS:
        yield from db.execute(f"SELECT run_id, name, {column} FROM {table} WHERE 1{by_name}",
                              name_args)
        return
    for start in range(0, len(ids), ID_CHUNK):  # a page of a big store: by primary key
        chunk = ids[start:start + ID_CHUNK]
        marks = ", ".join("?" * len(chunk))
        yield from db.execute(f"SELECT run_id, name, {column} FROM {table} "
                              f"WHERE run_id IN ({marks}){by_name}", [*chunk, *name_args])


def has_outputs(db: sqlite3.Connection) -> bool:
    """Whether any FINISHED run recorded an output."""
    return db.execute("SELECT 1 FROM outputs o JOIN runs r USING (run_id) "
                      "WHERE r.status='FINISHED' LIMIT 1").fetchone() is not None


def producers(db: sqlite3.Connection, digests: Iterable[str]) -> dict[str, Pairs]:
    """Digest -> (run id, output path) of the FINISHED runs that wrote a file with it, first
    run first."""
    wanted = list(dict.fromkeys(digests))
    found: dict[str, Pairs] = {}
    for start in range(0, len(wanted), ID_CHUNK):
        chunk = wanted[start:start + ID_CHUNK]
        rows = db.execute(
            "SELECT o.digest, o.run_id, o.path FROM outputs o JOIN runs r USING (run_id) "
            f"WHERE r.status='FINISHED' AND o.digest IN ({','.join('?' * len(chunk))}) "
            "ORDER BY r.started_at, o.run_id, o.path", chunk)
        for digest, run_id, path in rows:
            found.setdefault(digest, []).append((run_id, path))
    return found


def consumers(db: sqlite3.Connection, run_id: str) -> Triples:
    """(run id, input name, output path) of the runs that read an output of ``run_id``."""
    rows = db.execute(
        "SELECT DISTINCT l.consumer, l.input, l.path FROM links l JOIN runs r "
        "ON r.run_id = l.consumer WHERE l.producer=? ORDER BY r.started_at, l.consumer",
        (run_id,))
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def reusable(db: sqlite3.Connection, key: str) -> Names:
    """The FINISHED runs recorded with reuse key ``key``, newest first."""
    rows = db.execute(
        "SELECT u.run_id FROM reuse u JOIN runs r USING (run_id) WHERE u.key=? AND "
        "r.status='FINISHED' ORDER BY r.started_at DESC", (key,))
    return [str(row[0]) for row in rows]


def field_names(db: sqlite3.Connection) -> dict[str, Names]:
    """The names of the parameters and metrics any indexed run has, sorted."""
    names: dict[str, Names] = {"params": [], "metrics": []}
    for table in names:
        rows = db.execute(f"SELECT DISTINCT name FROM {table} ORDER BY name")
        names[table] = [str(row[0]) for row in rows]
    return names
