"""A cache of file digests keyed by what ``stat`` says, so unchanged data is never read twice.

A row is (device, inode) -> (size, mtime_ns, digest); a file whose size and modification time are
those of its row is not read again. The cache is an SQLite database in WAL mode under the cache
root, safe for runs that hash at the same time (a writer waits, readers never do). A file changed
less than ``RACY_S`` seconds before it was hashed is not cached: a second change within the same
clock tick would leave its mtime unchanged (git's "racily clean" problem).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat as stat_mod
import time
from collections.abc import Collection, Iterator
from pathlib import Path

DATABASE = "digests.sqlite"
BATCH = 500  # inodes per query (SQLite allows 999 parameters in old versions)
SCAN_AFTER = 4 * BATCH  # more inodes than this: one scan of the device's rows
RACY_S = 2.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL, PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
"""
Key = tuple[int, int, int, int]  # dev, ino, size, mtime_ns


def stat_key(st: os.stat_result) -> Key:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class StatCache:
    """Digests by stat key; ``path`` None keeps nothing (every file is hashed)."""

    def __init__(self, path: Path | None, racy_s: float = RACY_S) -> None:
        self.path = path
        self.racy_s = racy_s
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[int, int, int, int, str]] = []
        self.hits = 0
        self.misses = 0

    def get(self, key: Key) -> str | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Collection[Key]) -> dict[Key, str]:
        """The digests known for ``keys`` (a file whose size or mtime changed is not known)."""
        db = self._connection()
        found: dict[Key, str] = {}
        by_dev: dict[int, dict[int, Key]] = {}
        for key in keys:
            by_dev.setdefault(key[0], {})[key[1]] = key
        try:
            for dev, inodes in by_dev.items() if db is not None else ():
                for ino, size, mtime_ns, digest in _rows(db, dev, list(inodes)):  # type: ignore[arg-type]
                    wanted = inodes.get(ino)
                    if wanted is not None and (size, mtime_ns) == wanted[2:]:
                        found[wanted] = str(digest)
        except sqlite3.DatabaseError:
            found = {}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, key: Key, digest: str, hashed_at: float) -> None:
        """Remember ``digest`` for ``key`` unless the file changed just before it was hashed."""
        if key[3] / 1e9 < hashed_at - self.racy_s:
            self._pending.append((*key, digest))
            if len(self._pending) >= 1000:
                self.flush()

    def flush(self) -> None:
        db = self._connection()
        pending, self._pending = self._pending, []
        if db is None or not pending:
            return
        # A cache that cannot be written only costs time.
        with contextlib.suppress(sqlite3.DatabaseError), db:
            db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", pending)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
            except (OSError, sqlite3.DatabaseError):
                self.path = None  # unusable: hash everything, say nothing
                return None
            self._db = db
        return self._db


def _rows(db: sqlite3.Connection, dev: int,
          wanted: list[int]) -> Iterator[tuple[int, int, int, str]]:
    """The rows of ``wanted`` inodes of ``dev``: looked up in batches, or (many inodes: a large
    data set) in one scan of the device's rows, which costs one query instead of hundreds."""
    if len(wanted) > SCAN_AFTER:
        yield from db.execute("SELECT ino, size, mtime_ns, digest FROM digests WHERE dev=?",
                              (dev,))
        return
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start:start + BATCH]
        yield from db.execute("SELECT ino, size, mtime_ns, digest FROM digests WHERE dev=? AND "
                              f"ino IN ({','.join('?' * len(chunk))})", (dev, *chunk))


@contextlib.contextmanager
def opened(path: Path | None, racy_s: float = RACY_S) -> Iterator[StatCache]:
    cache = StatCache(path, racy_s)
    try:
        yield cache
    finally:
        cache.close()


def walk_files(root: Path) -> Iterator[tuple[str, str, Key]]:
    """(relative POSIX path, path, stat key) of every regular file under ``root``, symlinks to
    files followed, symlinked directories not entered; in no particular order. Plain strings
    and tuples: this is the loop that runs once per file of a large data set."""
    stack = [(str(root), "")]
    isdir, isreg = stat_mod.S_ISDIR, stat_mod.S_ISREG
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    st = entry.stat()
                except OSError:
                    continue  # a dangling symlink: no content to read
                if isreg(st.st_mode):
                    yield (prefix + entry.name, entry.path,
                           (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
                elif isdir(st.st_mode) and not entry.is_symlink():
                    stack.append((entry.path, prefix + entry.name + "/"))


def now() -> float:
    return time.time()
