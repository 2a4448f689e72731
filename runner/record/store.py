"""The run store under REPRUN_HOME: one directory per run, and an SQLite index for fast listing.

``runs/<run_id>/run.json`` is the source of truth, replaced atomically at each step;
``index.sqlite`` only summarises it and can be rebuilt from the records (``reprun runs reindex``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import RunNotFoundError, UsageError
from runner.frozen import frozen
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive

if TYPE_CHECKING:  # the record types are imported only when a record is used
    from runner.record.types import RunRecord

RECORD = "run.json"
COLUMNS = ("run_id", "status", "started_at", "duration_s", "project", "entry_point", "exit_code")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, started_at TEXT NOT NULL,
    duration_s REAL, project TEXT, entry_point TEXT, exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
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

    def list(self, limit: int | None = None) -> list[RunSummary]:
        """Newest first, from the index (rebuilt if it is missing)."""
        if not self.index_path.exists():
            self.reindex()
        with self._index() as db:
            running = [r[0] for r in db.execute("SELECT run_id FROM runs WHERE status='RUNNING'")]
        for run_id in running:
            with contextlib.suppress(RunNotFoundError):
                self.reconcile(self.load(run_id))
        query = f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY started_at DESC, run_id"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._index() as db:
            return [RunSummary(*row) for row in db.execute(query)]

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
                db.executescript(SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _upsert(db: sqlite3.Connection, record: RunRecord) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record.run_id, record.status.value, record.started_at.isoformat(), record.duration_s,
         record.project.name, record.entry_point, record.exit_code),
    )
