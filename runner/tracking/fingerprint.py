"""Content fingerprints of files and directories, through the stat cache, with a progress bar.

Every file of every path is first listed and stat-ed; those the stat cache knows are not read.
The others are hashed; when that takes more than a second and stderr is a terminal, a progress bar
(rich, on stderr) shows how far it is.
"""

from __future__ import annotations

import stat as stat_mod
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.frozen import frozen
from runner.tracking.digest import ManifestEntry, file_digest, manifest_digest
from runner.tracking.statcache import Key, StatCache, stat_key, walk_files

PROGRESS_AFTER_S = 1.0


@frozen
class Fingerprint:
    """What a file or directory holds."""

    kind: str  # "file" or "directory"
    digest: str
    size: int
    files: int
    entries: tuple[ManifestEntry, ...] = ()  # a directory's manifest


@frozen
class _File:
    rel: str
    path: Path
    key: Key


def fingerprint_paths(paths: Sequence[Path], cache: StatCache,
                      live: bool = False) -> list[Fingerprint]:
    """The fingerprint of each path (a file or a directory); raises OSError for a missing one."""
    listed = [_list(path) for path in paths]
    known: dict[Key, str] = {}
    todo: dict[Key, _File] = {}
    for _is_dir, files in listed:
        for f in files:
            if f.key in known or f.key in todo:
                continue
            cached = cache.get(f.key)
            if cached is not None:
                known[f.key] = cached
            else:
                todo[f.key] = f
    known.update(_hash(list(todo.values()), cache, live))
    cache.flush()
    return [_fingerprint(is_dir, files, known) for is_dir, files in listed]


def _list(path: Path) -> tuple[bool, list[_File]]:
    st = path.stat()
    if stat_mod.S_ISDIR(st.st_mode):
        return True, [_File(rel, p, stat_key(s)) for rel, p, s in walk_files(path)]
    if not stat_mod.S_ISREG(st.st_mode):
        raise IsADirectoryError(f"'{path}' is neither a regular file nor a directory")
    return False, [_File(path.name, path, stat_key(st))]


def _fingerprint(is_dir: bool, files: list[_File], known: dict[Key, str]) -> Fingerprint:
    if not is_dir:
        f = files[0]
        return Fingerprint("file", known[f.key], f.key[2], 1)
    entries = tuple(sorted((ManifestEntry(f.rel, f.key[2], known[f.key]) for f in files),
                           key=lambda e: e.path))
    return Fingerprint("directory", manifest_digest(entries), sum(e.size for e in entries),
                       len(entries), entries)


def _hash(files: list[_File], cache: StatCache, live: bool) -> dict[Key, str]:
    digests: dict[Key, str] = {}
    bar = _LazyProgress(sum(f.key[2] for f in files), live)
    try:
        for f in files:
            started = time.time()
            digest = file_digest(f.path, bar.advance)
            key = _still(f)
            if key is not None and key != f.key:
                digest = file_digest(f.path)  # changed while it was read: read it again
            digests[f.key] = digest
            if key == f.key:
                cache.put(f.key, digest, started)
    finally:
        bar.stop()
    return digests


def _still(f: _File) -> Key | None:
    try:
        return stat_key(f.path.stat())
    except OSError:
        return None


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

