"""The run store under REPRUN_HOME: one directory per run, and an SQLite index for fast listing.

``runs/<run_id>/run.json`` is the source of truth, replaced atomically at each step;
``index.sqlite`` only summarises it (a row per run, its parameters and its metrics, so that runs
are filtered and sorted by them quickly) and can be rebuilt from the records (``reprun runs
reindex``). An index written by an older reprun (``PRAGMA user_version`` below `INDEX_VERSION`)
is rebuilt from the records the first time it is opened.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from runner.errors import RunNotFoundError
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive

if TYPE_CHECKING:  # the record types are imported only when a record is used
    from runner.record.types import RunRecord

RECORD = "run.json"
COLUMNS = ("run_id", "status", "started_at", "duration_s", "project", "entry_point", "exit_code",
           "backend")
INDEX_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, started_at TEXT NOT NULL,
    duration_s REAL, project TEXT, entry_point TEXT, exit_code INTEGER, backend TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, number REAL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, name TEXT NOT NULL, last REAL NOT NULL, step INTEGER,
    min REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
"""
# What a field of `field_sql` is, in SQL; a parameter or metric is looked up by its primary key.
RUN_FIELDS = {
    "run_id": "runs.run_id", "id": "runs.run_id", "status": "runs.status",
    "started": "runs.started_at", "started_at": "runs.started_at",
    "duration": "runs.duration_s", "duration_s": "runs.duration_s", "project": "runs.project",
    "entry_point": "runs.entry_point", "exit_code": "runs.exit_code", "backend": "runs.backend",
}
PARAM_SQL = "(SELECT {col} FROM params p WHERE p.run_id = runs.run_id AND p.name = ?)"
METRIC_SQL = "(SELECT last FROM metrics m WHERE m.run_id = runs.run_id AND m.name = ?)"
ID_CHUNK = 500


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


def reprun_home(env: Mapping[str, str]) -> Path:
    """REPRUN_HOME, or ~/.reprun."""
    configured = env.get("REPRUN_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".reprun"


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
    params: Mapping[str, str] = MappingProxyType({})
    metrics: Mapping[str, float] = MappingProxyType({})


class RunStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runs_dir = home / "runs"
        self.index_path = home / "index.sqlite"
        self._db: sqlite3.Connection | None = None

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run_dir(self, run_id: str) -> Path:
        path = self.run_dir(run_id)
        path.mkdir(parents=True, exist_ok=False)
        return path

    def save(self, record: RunRecord) -> None:
        """Replace the record atomically, then update its index row."""
        # Synced to disk once the run has ended; a RUNNING state is replaced moments later.
        atomic_write_text(self.run_dir(record.run_id) / RECORD, record.model_dump_json(indent=2),
                          durable=record.status.done)
        with self._index() as db:
            _upsert(db, record)

    def load(self, run_id: str) -> RunRecord:
        from pydantic import ValidationError

        from runner.record.types import RunRecord

        path = self.run_dir(run_id) / RECORD
        try:
            return RunRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise RunNotFoundError(f"run '{run_id}' has no record in {self.runs_dir}") from None
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise RunNotFoundError(f"the record {path} is not valid: {reason}") from None

    def resolve_id(self, prefix: str) -> str:
        """The one run id that starts with ``prefix``."""
        if not prefix:
            raise RunNotFoundError("no run id given", hint="see 'reprun runs list'")
        matches = self._ids_from_index(prefix) or self._ids_from_disk(prefix)
        if not matches:
            raise RunNotFoundError(f"no run matches '{prefix}'", hint="see 'reprun runs list'")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            many = f"{len(matches)}" if len(matches) <= 5 else "more than 5"
            raise RunNotFoundError(
                f"'{prefix}' matches {many} runs ({shown})", hint="give more of the id"
            )
        return matches[0]

    def _ids_from_index(self, prefix: str) -> list[str]:
        if not self.index_path.exists():
            return []
        with self._index() as db:
            rows = db.execute(
                "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT 6",
                (prefix, prefix + "\uffff"),
            )
            found = [row[0] for row in rows]
        return [n for n in found if (self.run_dir(n) / RECORD).is_file()]

    def _ids_from_disk(self, prefix: str) -> list[str]:
        names = [p.name for p in self.runs_dir.iterdir()] if self.runs_dir.is_dir() else []
        return sorted(
            n for n in names if n.startswith(prefix) and (self.run_dir(n) / RECORD).is_file()
        )

    def get(self, prefix: str) -> RunRecord:
        """The record of the run ``prefix`` names, with a dead RUNNING run marked FAILED."""
        return self.reconcile(self.load(self.resolve_id(prefix)))

    def reconcile(self, record: RunRecord) -> RunRecord:
        """A RUNNING run whose reprun process is gone becomes FAILED, with the reason."""
        from runner.record.types import Status

        runner = record.runner
        if record.status is not Status.RUNNING or runner is None:
            return record
        if runner.hostname != hostname() or process_alive(runner.pid, runner.start_ticks):
            return record
        run_dir = self.run_dir(record.run_id)
        last = max((p.stat().st_mtime for p in run_dir.iterdir()), default=None)
        ended = datetime.fromtimestamp(last, timezone.utc) if last else record.started_at
        fixed = record.model_copy(update={
            "status": Status.FAILED,
            "reason": f"the reprun process (pid {runner.pid}) ended without finishing the run",
            "ended_at": ended,
            "duration_s": round((ended - record.started_at).total_seconds(), 3),
        })
        self.save(fixed)
        return fixed

    def list(
        self, limit: int | None = None, where: Condition | None = None,
        sort: Sequence[tuple[str, bool]] = (), details: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[RunSummary]:
        """Runs from the index (rebuilt if it is missing): those ``where`` selects, ordered by
        the ``sort`` fields (name, descending) with runs lacking a value last, then newest first.
        With ``details`` each summary carries its parameters and metrics (last values): all of
        them, or only the ``params.NAME`` and ``metrics.NAME`` among ``fields``.
        KeyError for an unknown sort field."""
        if not self.index_path.exists():
            self.reindex()
        with self._index() as db:
            running = [r[0] for r in db.execute("SELECT run_id FROM runs WHERE status='RUNNING'")]
        for run_id in running:
            with contextlib.suppress(RunNotFoundError):
                self.reconcile(self.load(run_id))
        query, args = _select(limit, where, sort)
        with self._index() as db:
            rows = db.execute(query, args).fetchall()
            if not details:
                return [RunSummary(*row) for row in rows]
            return _with_details(db, rows, fields)

    def reindex(self) -> int:
        """Rebuild the index from the JSON records; returns how many runs it holds."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        count = 0
        with self._index() as db:
            for run_dir in self._run_dirs():
                with contextlib.suppress(RunNotFoundError):
                    _upsert(db, self.load(run_dir.name))
                    count += 1
        return count

    def _run_dirs(self) -> Iterator[Path]:
        if self.runs_dir.is_dir():
            yield from (p for p in self.runs_dir.iterdir() if (p / RECORD).is_file())

    @contextlib.contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        """The index in a transaction. The connection stays open for the store's life: closing
        the last connection of a WAL database checkpoints it, which costs a sync each time."""
        try:
            db = self._connection()
            with db:
                yield db
        except sqlite3.DatabaseError as exc:
            if "malformed" not in str(exc) and "not a database" not in str(exc):
                raise
            self.close()
            raise RunNotFoundError(
                f"the run index {self.index_path} is damaged ({exc})",
                hint="rebuild it from the records with 'reprun runs reindex'",
            ) from None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.home.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.index_path, timeout=30)
            try:
                # The index is rebuildable from the records: WAL without a sync per commit.
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                    self._upgrade(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Make an index of another version (or a new one) current: its tables are dropped and
        filled again from the records, in one transaction (a concurrent reprun waits for it)."""
        previous = db.isolation_level
        db.isolation_level = None
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                tables = db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                old = [row[0] for row in tables]
                for table in old:
                    db.execute(f'DROP TABLE "{table}"')
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if old:  # an index from an older reprun: fill it from the records
                    for run_dir in self._run_dirs():
                        with contextlib.suppress(RunNotFoundError):
                            _upsert(db, self.load(run_dir.name))
                db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.isolation_level = previous

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _upsert(db: sqlite3.Connection, record: RunRecord) -> None:
    run_id = record.run_id
    db.execute(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
         record.project.name, record.entry_point, record.exit_code, record.backend.name),
    )
    db.execute("DELETE FROM params WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO params VALUES (?, ?, ?, ?)",
                   [(run_id, k, v, _number(v)) for k, v in record.parameters.items()])
    db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(run_id, k, m.last, m.step, m.min, m.max, m.count)
                    for k, m in record.metrics.items()])


def _number(text: str) -> float | None:
    """A parameter's value as a finite number, when it is one."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number - number == 0 else None  # not nan or inf


def _select(limit: int | None, where: Condition | None,
            sort: Sequence[tuple[str, bool]]) -> tuple[str, list[Any]]:
    query = f"SELECT {', '.join(f'runs.{c}' for c in COLUMNS)} FROM runs"
    args: list[Any] = []
    order = []
    for index, (name, descending) in enumerate(sort):
        join, join_args, expr = sort_sql(name, f"s{index}")
        query += f" {join}" if join else ""
        args += join_args
        order.append(f"{expr} IS NULL, {expr}{' DESC' if descending else ''}")
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
    """(run_id, name, value) of the runs ``ids`` (a whole table scan when they are many)."""
    by_name = f" AND name IN ({', '.join('?' * len(names))})" if names else ""
    name_args: list[Any] = list(names or [])
    if len(ids) > ID_CHUNK:
        yield from db.execute(f"SELECT run_id, name, {column} FROM {table} WHERE 1{by_name}",
                              name_args)
        return
    if ids:
        marks = ", ".join("?" * len(ids))
        yield from db.execute(f"SELECT run_id, name, {column} FROM {table} "
                              f"WHERE run_id IN ({marks}){by_name}", [*ids, *name_args])
