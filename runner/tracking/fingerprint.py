"""Content fingerprints of files and directories, through the stat cache, with a progress bar.

Every file of every path is first listed and stat-ed; those the stat cache knows are not read.
The others are hashed; when that takes more than a second and stderr is a terminal, a progress bar
(rich, on stderr) shows how far it is. The per-file loop uses plain strings and tuples: checking
10,000 unchanged files is a walk, a stat each and a few batched cache queries.
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from runner.frozen import frozen
from runner.tracking.digest import ManifestEntry, file_digest, manifest_digest
from runner.tracking.statcache import Key, StatCache, walk_files

PROGRESS_AFTER_S = 1.0
Listed = tuple[bool, list[tuple[str, str, Key]]]  # is a directory; (rel, path, key) per file


@frozen
class Fingerprint:
    """What a file or directory holds."""

    kind: str  # "file" or "directory"
    digest: str
    size: int
    files: int
    entries: tuple[ManifestEntry, ...] = ()  # a directory's manifest, sorted by path


def fingerprint_paths(paths: Sequence[Path], cache: StatCache,
                      live: bool = False) -> list[Fingerprint]:
    """The fingerprint of each path (a file or a directory); raises OSError for a missing one."""
    listed = [_list(path) for path in paths]
    todo: dict[Key, str] = {}
    for _is_dir, files in listed:
        for _rel, path, key in files:
            todo.setdefault(key, path)
    known = cache.get_many(todo.keys())
    missing = [(key, path) for key, path in todo.items() if key not in known]
    known.update(_hash(missing, cache, live))
    cache.flush()
    return [_fingerprint(is_dir, files, known) for is_dir, files in listed]


def _list(path: Path) -> Listed:
    st = path.stat()
    if stat_mod.S_ISDIR(st.st_mode):
        return True, list(walk_files(path))
    if not stat_mod.S_ISREG(st.st_mode):
        raise OSError(0, "neither a regular file nor a directory", str(path))
    return False, [(path.name, str(path), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))]


def _fingerprint(is_dir: bool, files: list[tuple[str, str, Key]],
                 known: dict[Key, str]) -> Fingerprint:
    if not is_dir:
        _rel, _path, key = files[0]
        return Fingerprint("file", known[key], key[2], 1)
    files.sort(key=itemgetter(0))  # paths are unique: sorted by path, as the manifest is
    make = ManifestEntry._make
    entries = tuple([make((rel, key[2], known[key])) for rel, _path, key in files])
    return Fingerprint("directory", manifest_digest(entries), sum(e.size for e in entries),
                       len(entries), entries)


def _hash(files: list[tuple[Key, str]], cache: StatCache, live: bool) -> dict[Key, str]:
    digests: dict[Key, str] = {}
    bar = _LazyProgress(sum(key[2] for key, _path in files), live)
    try:
        for key, path in files:
            started = time.time()
            digest = file_digest(path, bar.advance)
            after = _key_now(path)
            if after is not None and after != key:
                digest = file_digest(path)  # changed while it was read: read it again
            digests[key] = digest
            if after == key:
                cache.put(key, digest, started)
    finally:
        bar.stop()
    return digests


def _key_now(path: str) -> Key | None:
    try:
        st = os.stat(path)  # noqa: PTH116 (a str path is faster)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _LazyProgress:
    """A rich progress bar on stderr that appears only once hashing has taken a second."""

    def __init__(self, total: int, live: bool) -> None:
        self.total = total
        self.live = live
        self.done = 0
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is None:
            if not self.live or time.monotonic() - self.started < PROGRESS_AFTER_S:
                return
            self._start()
        self.bar.update(self.task, completed=self.done)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress("hashing inputs", BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("hash", total=self.total, completed=self.done)
        self.bar.start()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
