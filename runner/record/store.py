"""The run store under REPRUN_HOME: one directory per run, and an SQLite index for fast listing.

``runs/<run_id>/run.json`` is the source of truth, replaced atomically at each step;
``index.sqlite`` only summarises it and can be rebuilt from the records (``reprun runs reindex``).

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
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import RunNotFoundError, StoreError, UsageError
from runner.frozen import frozen
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive

if TYPE_CHECKING:  # the record types are imported only when a record is used
    from runner.record.types import RunRecord

RECORD = "run.json"
Pairs = list[tuple[str, str]]
Triples = list[tuple[str, str, str]]
Names = list[str]
RESERVE = ".reserve"
RESERVE_BYTES = 256 * 1024  # room for the last records of a run once the disk is full
FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
COLUMNS = ("run_id", "status", "started_at", "duration_s", "project", "entry_point", "exit_code")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, started_at TEXT NOT NULL,
    duration_s REAL, project TEXT, entry_point TEXT, exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
"""
# Version 2: outputs by digest, run-to-run lineage links and reuse keys (tables below).
INDEX_VERSION = 2
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


@frozen
class RunSummary:
    """One row of the run index, as `reprun runs list` shows it."""

    run_id: str
    status: str
    started_at: str
    duration_s: float | None
    project: str
    entry_point: str
    exit_code: int | None


class RunStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runs_dir = home / "runs"
        self.index_path = home / "index.sqlite"
        self._db: sqlite3.Connection | None = None

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

    def _list_indexed(self, limit: int | None) -> list[RunSummary]:
        if not self.index_path.exists():
            self.reindex()
        with self._index() as db:
            indexed = dict(db.execute("SELECT run_id, status FROM runs").fetchall())
        # Read again: runs still RUNNING (their process may be gone) and runs the index missed
        # (its update failed on a full disk, or their process was killed in between).
        stale = [n for n, status in indexed.items() if status == "RUNNING"]
        stale += sorted(set(self._run_ids()) - indexed.keys())
        fresh = {summary.run_id: summary for summary in self._summaries(stale)}
        query = f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY started_at DESC, run_id"
        if limit is not None and not fresh:
            query += f" LIMIT {int(limit)}"
        with self._index() as db:
            rows = [RunSummary(*row) for row in db.execute(query)]
        if not fresh:
            return rows
        merged = {row.run_id: row for row in rows if row.run_id in indexed}
        merged.update(fresh)
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
                record.duration_s, record.project.name, record.entry_point, record.exit_code))
        return found

    def list(self, limit: int | None = None) -> list[RunSummary]:
        """Newest first, from the index (rebuilt if it is missing); from the records themselves
        when the index cannot be read (a read-only or full store)."""
        try:
            return self._list_indexed(limit)
        except (sqlite3.OperationalError, OSError):
            self.close()
            return _newest(self._summaries(self._run_ids()), limit)

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
                db.executescript(SCHEMA + LINEAGE_SCHEMA)
                if db.execute("PRAGMA user_version").fetchone()[0] < INDEX_VERSION:
                    self._upgrade(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """An index made by an older reprun: fill the new tables from the records, once (the
        first process to get the write lock does it; the others find it done)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute("PRAGMA user_version").fetchone()[0] < INDEX_VERSION
            if old and db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None:
                for run_dir in self._run_dirs():
                    with contextlib.suppress(RunNotFoundError):
                        _upsert_lineage(db, self.load(run_dir.name))
            if old:
                db.execute(f"PRAGMA user_version={INDEX_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
    db.execute(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record.run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
         record.project.name, record.entry_point, record.exit_code),
    )
    _upsert_lineage(db, record)


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
