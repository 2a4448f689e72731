"""The run store under REPRUN_HOME: one directory per run, and an SQLite index for fast listing.

``runs/<run_id>/run.json`` is the source of truth, replaced atomically at each step;
``index.sqlite`` (`runner.record.index`) only summarises it (a row per run, its parameters and its
metrics, so that runs are filtered and sorted by them quickly) and can be rebuilt from the records
(``reprun runs reindex``). An index written by another reprun (``PRAGMA user_version`` other than
`INDEX_VERSION`) is rebuilt from the records the first time it is opened.

Faults: each run directory holds a small reserve file, given back when the disk is full so that
the record can still say how the run ended. The index is a convenience: when it cannot be written
(full disk, read-only store) the record still is, and the run stays in the store's journal
(`runner.record.journal`), from which listing (`runner.record.listing`) reads it; when the index
cannot be read at all, listing reads every record.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import RunNotFoundError, StoreError
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive
from runner.record import index
from runner.record.index import (
    INDEX_VERSION,
    INDEXED_BY_RUN,
    LINEAGE_SCHEMA,
    SCHEMA,
    Condition,
    Names,
    Pairs,
    RunSummary,
    Triples,
    upsert,
)
from runner.record.journal import Journal

if TYPE_CHECKING:  # the record types are imported only when a record is used
    from runner.record.types import RunRecord

RECORD = "run.json"
RESERVE = ".reserve"
TRASH = "trash"  # runs being deleted, outside runs/
RESERVE_BYTES = 256 * 1024  # room for the last records of a run once the disk is full
FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
class RunStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runs_dir = home / "runs"
        self.index_path = home / "index.sqlite"
        self.journal = Journal(home)  # the runs the index may be missing
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
            self.journal.add(run_id)  # before the directory: listing finds the run through it
            path.mkdir(parents=True, exist_ok=False)
            (path / RESERVE).write_bytes(bytes(RESERVE_BYTES))
        except OSError as exc:
            with contextlib.suppress(OSError):
                (path / RESERVE).unlink(missing_ok=True)
                path.rmdir()
            self.journal.remove(run_id)
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
        self.update_index(record)

    def update_index(self, record: RunRecord) -> bool:
        """The record's rows in the index, and the run out of the journal; False (and the run
        in the journal) when the index refused. The index is rebuilt from the records: a full
        or read-only disk must not stop a run."""
        try:
            with self.transaction() as db:
                upsert(db, record)
        except (sqlite3.Error, OSError):
            with contextlib.suppress(OSError):
                self.journal.add(record.run_id)
            return False
        self.journal.remove(record.run_id)
        return True

    def discard(self, run_id: str) -> None:
        """Remove a run that could not be started, so that no run is left without a record."""
        import shutil

        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        self.journal.remove(run_id)

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
        with contextlib.suppress(sqlite3.OperationalError, OSError), self.transaction() as db:
            for table, column in INDEXED_BY_RUN:
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
        self.journal.remove(run_id)
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
            with self.transaction() as db:
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

    def run_ids(self) -> list[str]:
        """Every run directory's name (a listing of ``runs/``: for rebuilding, not listing)."""
        if not self.runs_dir.is_dir():
            return []
        return [p.name for p in self.runs_dir.iterdir() if not p.name.startswith(".")]

    def list(
        self, limit: int | None = None, where: Condition | None = None,
        sort: Sequence[tuple[str, bool]] = (), details: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[RunSummary]:
        """Runs from the index (rebuilt if it is missing): those ``where`` selects, ordered by
        the ``sort`` fields (name, descending) with runs lacking a value last, then newest first.
        With ``details`` each summary carries its parameters and metrics (last values): all of
        them, or only the ``params.NAME`` and ``metrics.NAME`` among ``fields``.
        KeyError for an unknown sort field. How: `runner.record.listing`."""
        from runner.record.listing import list_runs

        return list_runs(self, limit, where, sort, details, fields)

    def reindex(self) -> int:
        """Rebuild the index from the JSON records; returns how many runs it holds."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        noted = self.journal.run_ids()
        count = 0
        with self.transaction() as db:
            for run_dir in self._run_dirs():
                with contextlib.suppress(RunNotFoundError):
                    upsert(db, self.load(run_dir.name))
                    count += 1
        for run_id in noted:  # in the index now, or without a record: nothing to list
            self.journal.remove(run_id)
        return count

    def _run_dirs(self) -> Iterator[Path]:
        if self.runs_dir.is_dir():
            yield from (p for p in self.runs_dir.iterdir() if (p / RECORD).is_file())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
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
                            upsert(db, self.load(run_dir.name))
                db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.isolation_level = previous

    def has_outputs(self) -> bool:
        """Whether any FINISHED run in the index recorded an output (else nothing can match)."""
        with self.transaction() as db:
            return index.has_outputs(db)

    def producers(self, digests: Iterable[str]) -> dict[str, Pairs]:
        """Digest -> (run id, output path) of the FINISHED runs that wrote a file with it,
        the first run first (the one that made it; later ones may have copied or remade it)."""
        with self.transaction() as db:
            return index.producers(db, digests)

    def consumers(self, run_id: str) -> Triples:
        """(run id, input name, output path) of the runs that read an output of ``run_id``."""
        with self.transaction() as db:
            return index.consumers(db, run_id)

    def reusable(self, key: str) -> Names:
        """The FINISHED runs recorded with reuse key ``key``, newest first."""
        with self.transaction() as db:
            return index.reusable(db, key)

    def field_names(self) -> dict[str, Names]:
        """The names of the parameters and metrics any indexed run has, sorted (for choosing
        columns); empty when the index cannot be read."""
        if not self.index_path.exists():
            return {"params": [], "metrics": []}
        try:
            with self.transaction() as db:
                return index.field_names(db)
        except sqlite3.OperationalError:
            self.close()
            return {"params": [], "metrics": []}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

