"""The run store under REPRUN_HOME: one directory per run, and an SQLite index for fast listing.

``runs/<run_id>/run.json`` is the source of truth, replaced atomically at each step;
``index.sqlite`` only summarises it (a row per run, its parameters and its metrics, so that runs
are filtered and sorted by them quickly) and can be rebuilt from the records (``reprun runs
reindex``). An index written by another reprun (``PRAGMA user_version`` other than `INDEX_VERSION`)
is rebuilt from the records the first time it is opened.

Faults: each run directory holds a small reserve file, given back when the disk is full so that
the record can still say how the run ended. The index is a convenience: when it cannot be written
(full disk, read-only store) the record still is, and listing reads the records themselves for the
runs the index misses, or all of them when the index cannot be read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from runner.errors import RunNotFoundError, StoreError, UsageError
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive

if TYPE_CHECKING:  # the record types are imported only when a record is used
    from runner.record.types import RunRecord

RECORD = "run.json"
Pairs = list[tuple[str, str]]
Triples = list[tuple[str, str, str]]
Names = list[str]
RESERVE = ".reserve"
TRASH = "trash"  # runs being deleted, outside runs/
RESERVE_BYTES = 256 * 1024  # room for the last records of a run once the disk is full
FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
COLUMNS = ("run_id", "status", "started_at", "duration_s", "project", "entry_point", "exit_code",
           "backend", "sweep", "trial")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, started_at TEXT NOT NULL,
    duration_s REAL, project TEXT, entry_point TEXT, exit_code INTEGER, backend TEXT,
    sweep TEXT, trial INTEGER
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep);
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
# Version 2: parameters and metrics; outputs by digest, lineage links and reuse keys.
# Version 3: both of those in one index. Version 4: the sweep and trial of each run.
INDEX_VERSION = 5  # 5: records whose run_id is not their folder's name are left out
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
    "sweep": "runs.sweep", "trial": "runs.trial",
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


def reprun_home(env: Mapping[str, str]) -> Path:
    """REPRUN_HOME, or ~/.reprun."""
    configured = env.get("REPRUN_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".reprun"


def check_layout(store: RunStore) -> None:
    """Refuse a store whose parts are of the wrong kind (REPRUN_HOME or runs/ a file,
    index.sqlite a directory...) before anything is written to it."""
    for path, want_dir in ((store.home, True), (store.runs_dir, True),
                           (store.index_path, False)):
        if not path.exists() and not path.is_symlink():
            continue
        is_dir = path.is_dir()
        if is_dir != want_dir or (not want_dir and not path.is_file()):
            what = "a directory" if want_dir else "a file"
            found = "a directory" if is_dir else "a broken link" if not path.exists() else (
                "a file" if path.is_file() else "not a regular file")
            name = "REPRUN_HOME" if path == store.home else str(path.relative_to(store.home))
            fix = ("set REPRUN_HOME to a directory" if path == store.home else
                   f"move '{path}' away" + (" and run 'reprun runs reindex'" if not want_dir
                                            else ""))
            raise UsageError(f"the run store is not usable: {name} ('{path}') is {found}, not "
                             f"{what}", hint=fix)


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
    params: Mapping[str, str] = MappingProxyType({})
    metrics: Mapping[str, float] = MappingProxyType({})


class RunStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runs_dir = home / "runs"
        self.index_path = home / "index.sqlite"
        self._local = threading.local()  # one index connection per thread (a sweep's trials)
        self.refused: dict[str, str] = {}  # folder name -> why its record was refused

    @property
    def _db(self) -> sqlite3.Connection | None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        return db

    @_db.setter
    def _db(self, db: sqlite3.Connection | None) -> None:
        self._local.db = db

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run_dir(self, run_id: str) -> Path:
        """A new run's directory, with its reserve; StoreError when the store cannot take it."""
        path = self.run_dir(run_id)
        try:
            path.mkdir(parents=True, exist_ok=False)
            (path / RESERVE).write_bytes(bytes(RESERVE_BYTES))
        except OSError as exc:
            with contextlib.suppress(OSError):
                (path / RESERVE).unlink(missing_ok=True)
                path.rmdir()
            raise self.cannot_write(exc, "the run was not started") from None
        return path

    def check_writable(self) -> None:
        """StoreError now, before anything is prepared, if no run could be recorded here."""
        existing = next((p for p in (self.runs_dir, *self.runs_dir.parents) if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK):
            try:
                read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
            except OSError:
                read_only = False
            code = errno.EROFS if read_only else errno.EACCES
            raise self.cannot_write(OSError(code, os.strerror(code), str(existing)),
                                    "the run was not started")

    def cannot_write(self, exc: OSError, consequence: str) -> StoreError:
        """The one-line error for a store that refuses a write."""
        reason = exc.strerror or str(exc)
        if exc.errno in READ_ONLY:
            return StoreError(
                f"the run store {self.home} is not writable ({reason}): {consequence}",
                hint="runs can still be listed, shown and exported; set REPRUN_HOME to a "
                     "writable directory to start runs")
        if exc.errno in FULL:
            return StoreError(f"the run store {self.home} is full ({reason}): {consequence}",
                              hint="free some space and run again")
        return StoreError(f"cannot write the run store {self.home}: {reason}: {consequence}")

    def save(self, record: RunRecord) -> None:
        """Replace the record atomically, then update its index row (best effort).

        On a full disk, the final record of a run gets the run's reserve and a second try."""
        path = self.run_dir(record.run_id) / RECORD
        # Synced to disk once the run has ended; a RUNNING state is replaced moments later.
        text = record.model_dump_json(indent=2)
        try:
            atomic_write_text(path, text, durable=record.status.done)
        except OSError as exc:
            final = record.status.done
            if exc.errno not in FULL or not final or not self._release_reserve(record.run_id):
                raise self.cannot_write(exc, f"the record {path} was not updated") from None
            try:
                atomic_write_text(path, text, durable=record.status.done)
            except OSError as again:
                raise self.cannot_write(again, f"the record {path} was not updated") from None
        if record.status.done:
            self._release_reserve(record.run_id)
        # The index is rebuilt from the records: a full or read-only disk must not stop a run.
        with contextlib.suppress(sqlite3.OperationalError, OSError), self._index() as db:
            _upsert(db, record)

    def discard(self, run_id: str) -> None:
        """Remove a run that could not be started, so that no run is left without a record."""
        import shutil

        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def delete(self, run_id: str) -> None:
        """Remove a recorded run: its directory is first moved out of ``runs/`` (one rename,
        so no half-removed run is ever listed or reindexed), then its index rows go, then the
        files. StoreError when the store refuses."""
        import shutil

        trash = self.home / TRASH / f"{run_id}.{os.getpid()}"
        try:
            trash.parent.mkdir(exist_ok=True)
            self.run_dir(run_id).replace(trash)
        except FileNotFoundError:
            raise RunNotFoundError(f"run '{run_id}' has no record in {self.runs_dir}") from None
        except OSError as exc:
            raise self.cannot_write(exc, f"run {run_id[:8]} was not deleted") from None
        with contextlib.suppress(sqlite3.OperationalError, OSError), self._index() as db:
            for table, column in INDEXED_BY_RUN:
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
        shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):
            trash.parent.rmdir()  # when no other deletion is going on

    def empty_trash(self) -> None:
        """Finish deletions a stopped reprun left half done."""
        import shutil

        if (self.home / TRASH).is_dir():
            for left in (self.home / TRASH).iterdir():
                shutil.rmtree(left, ignore_errors=True)

    def _release_reserve(self, run_id: str) -> bool:
        try:
            (self.run_dir(run_id) / RESERVE).unlink()
        except OSError:
            return False
        return True

    def load(self, run_id: str) -> RunRecord:
        from pydantic import ValidationError

        from runner.record.types import RunRecord

        path = self.run_dir(run_id) / RECORD
        try:
            record = RunRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise RunNotFoundError(f"run '{run_id}' has no record in {self.runs_dir}") from None
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise RunNotFoundError(f"the record {path} is not valid: {reason}") from None
        if record.run_id != run_id:  # a record that lies about itself is not that run
            message = (f"the record in folder {self.run_dir(run_id)} says its run_id is "
                       f"{record.run_id[:100]!r}, not the folder's name: refused")
            self.refused[run_id] = message
            raise RunNotFoundError(message, hint="remove that folder, or export the run again "
                                   "from where it was made")
        return record

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
        try:
            with self._index() as db:
                rows = db.execute(
                    "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? "
                    "ORDER BY run_id LIMIT 6", (prefix, prefix + "\uffff"),
                )
                found = [row[0] for row in rows]
        except sqlite3.OperationalError:  # an index that cannot be opened: the disk answers
            self.close()
            return []
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
        with contextlib.suppress(StoreError):  # a read-only store: shown, not written
            self.save(fixed)
        return fixed

    def _list_indexed(self, limit: int | None, where: Condition | None,
                      sort: Sequence[tuple[str, bool]], details: bool,
                      fields: Sequence[str] | None) -> list[RunSummary]:
        if not self.index_path.exists():
            self.reindex()
        with self._index() as db:
            indexed = dict(db.execute("SELECT run_id, status FROM runs").fetchall())
        stale = [n for n, status in indexed.items() if status == "RUNNING"]
        stale += sorted(set(self._run_ids()) - indexed.keys())
        fresh = {summary.run_id: summary for summary in self._summaries(stale)}
        plain = where is None and not sort and not details
        with self._index() as db:
            found = _query(db, None if fresh and plain else limit, where, sort, details, fields)
        if not (fresh and plain):
            return found  # filtered and sorted runs come from the index (``fresh`` went into it)
        merged = {row.run_id: row for row in found}
        merged.update(fresh)  # a run the index could not take is still listed
        return _newest(list(merged.values()), limit)

    def _run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return [p.name for p in self.runs_dir.iterdir() if not p.name.startswith(".")]

    def _summaries(self, run_ids: list[str]) -> list[RunSummary]:
        """Summaries read from the records (reconciled), written to the index when it can be."""
        found = []
        for run_id in run_ids:
            try:
                record = self.reconcile(self.load(run_id))
            except RunNotFoundError:
                continue
            with contextlib.suppress(sqlite3.OperationalError, OSError), self._index() as db:
                _upsert(db, record)
            found.append(RunSummary(
                record.run_id, record.status.value, record.started_at.isoformat(),
                record.duration_s, record.project.name, record.entry_point, record.exit_code,
                record.backend.name, *_sweep_columns(record)))
        return found

    def list(
        self, limit: int | None = None, where: Condition | None = None,
        sort: Sequence[tuple[str, bool]] = (), details: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[RunSummary]:
        """Runs from the index (rebuilt if it is missing): those ``where`` selects, ordered by
        the ``sort`` fields (name, descending) with runs lacking a value last, then newest first.
        With ``details`` each summary carries its parameters and metrics (last values): all of
        them, or only the ``params.NAME`` and ``metrics.NAME`` among ``fields``.
        KeyError for an unknown sort field.

        Runs still RUNNING and runs the index missed (its update failed on a full disk) are read
        from their records first. When the index cannot be read at all (a read-only or full
        store), the same query runs over an index made in memory from the records."""
        try:
            return self._list_indexed(limit, where, sort, details, fields)
        except (sqlite3.OperationalError, OSError):
            self.close()
        memory = sqlite3.connect(":memory:")
        try:
            memory.executescript(SCHEMA + LINEAGE_SCHEMA)
            for run_id in self._run_ids():
                with contextlib.suppress(RunNotFoundError):
                    _upsert(memory, self.reconcile(self.load(run_id)))
            return _query(memory, limit, where, sort, details, fields)
        finally:
            memory.close()

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
                for statement in (SCHEMA + LINEAGE_SCHEMA).split(";"):
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

    def producers(self, digests: Iterable[str]) -> dict[str, Pairs]:
        """Digest -> (run id, output path) of the FINISHED runs that wrote a file with it,
        the first run first (the one that made it; later ones may have copied or remade it)."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, Pairs] = {}
        with self._index() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = db.execute(
                    "SELECT o.digest, o.run_id, o.path FROM outputs o JOIN runs r USING (run_id) "
                    f"WHERE r.status='FINISHED' AND o.digest IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY r.started_at, o.run_id, o.path", chunk)
                for digest, run_id, path in rows:
                    found.setdefault(digest, []).append((run_id, path))
        return found

    def consumers(self, run_id: str) -> Triples:
        """(run id, input name, output path) of the runs that read an output of ``run_id``."""
        with self._index() as db:
            rows = db.execute(
                "SELECT DISTINCT l.consumer, l.input, l.path FROM links l JOIN runs r "
                "ON r.run_id = l.consumer WHERE l.producer=? ORDER BY r.started_at, l.consumer",
                (run_id,))
            return [(str(a), str(b), str(c)) for a, b, c in rows]

    def reusable(self, key: str) -> Names:
        """The FINISHED runs recorded with reuse key ``key``, newest first."""
        with self._index() as db:
            rows = db.execute(
                "SELECT u.run_id FROM reuse u JOIN runs r USING (run_id) WHERE u.key=? AND "
                "r.status='FINISHED' ORDER BY r.started_at DESC", (key,))
            return [str(row[0]) for row in rows]

    def field_names(self) -> dict[str, Names]:
        """The names of the parameters and metrics any indexed run has, sorted (for choosing
        columns); empty when the index cannot be read."""
        names: dict[str, Names] = {"params": [], "metrics": []}
        if not self.index_path.exists():
            return names
        try:
            with self._index() as db:
                for table in names:
                    rows = db.execute(f"SELECT DISTINCT name FROM {table} ORDER BY name")
                    names[table] = [str(row[0]) for row in rows]
        except sqlite3.OperationalError:
            self.close()
        return names

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _newest(summaries: list[RunSummary], limit: int | None) -> list[RunSummary]:
    """Newest first, as the index orders them."""
    ordered = sorted(sorted(summaries, key=lambda s: s.run_id), key=lambda s: s.started_at,
                     reverse=True)
    return ordered if limit is None or limit < 0 else ordered[:limit]  # as SQL's LIMIT


def _upsert(db: sqlite3.Connection, record: RunRecord) -> None:
    run_id = record.run_id
    db.execute(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(COLUMNS))})",
        (run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
         record.project.name, record.entry_point, record.exit_code, record.backend.name,
         *_sweep_columns(record)),
    )
    db.execute("DELETE FROM params WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO params VALUES (?, ?, ?, ?)",
                   [(run_id, k, v, _number(v)) for k, v in record.parameters.items()])
    db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
    db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(run_id, k, m.last, m.step, m.min, m.max, m.count)
                    for k, m in record.metrics.items()])
    _upsert_lineage(db, record)


def _sweep_columns(record: RunRecord) -> tuple[str | None, int | None]:
    sweep = record.sweep
    return (sweep.id, sweep.trial) if sweep is not None else (None, None)


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


def _query(db: sqlite3.Connection, limit: int | None, where: Condition | None,
           sort: Sequence[tuple[str, bool]], details: bool,
           fields: Sequence[str] | None) -> list[RunSummary]:
    query, args = _select(limit, where, sort)
    rows = db.execute(query, args).fetchall()
    return _with_details(db, rows, fields) if details else [RunSummary(*row) for row in rows]


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
