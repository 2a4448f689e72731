"""The content-addressed cache of locks and environments (Python ones, and conda prefixes).

Layout under ``REPRUN_CACHE_DIR`` (default ``REPRUN_HOME/cache``), for Python environments (conda
prefixes have the same layout under ``conda/``, see ``runner.envs.conda.builder``)::

    python/locks/<request key>.txt     the lock a request resolved to (written atomically), after
                                       a first line "# request: <key>" (not part of the lock)
    python/envs/<env key>              symlink to the finished build: the "rename into place"
    python/builds/<env key>.<random>/  an environment; complete only with its marker inside
    python/keys/<key>.flock            one file lock per key: one builder at a time
    python/logs/                       full output of resolutions and builds

An environment never moves after it is built (virtual environments hold absolute paths), so
publishing it is an atomic rename of a symlink. A build that was killed or failed has no symlink
pointing at it and is deleted the next time its key is built; an entry whose marker is missing,
unreadable, or whose files are gone is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from runner.frozen import frozen
from runner.fsutil import atomic_write_text
from runner.record.home import reprun_home

MARKER = "reprun-env.json"
_HELD: dict[Path, IO[str]] = {}  # use locks of the environments this process runs in
USED = ".reprun-used"
PROJECTS = ".reprun-projects"


def _request_line(request_key: str) -> str:
    return f"# request: {request_key}"


def cache_root(env: Mapping[str, str]) -> Path:
    configured = env.get("REPRUN_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return reprun_home(env) / "cache"


@frozen
class CachedEnv:
    """A finished environment in the cache: its key, directory and marker."""

    key: str
    path: Path
    marker: dict[str, Any]


class PythonCache:
    def __init__(self, root: Path, kind: str = "python") -> None:
        self.root = root / kind
        self.locks = self.root / "locks"
        self.envs = self.root / "envs"
        self.builds = self.root / "builds"
        self.keys = self.root / "keys"
        self.logs = self.root / "logs"

    # --- locks -----------------------------------------------------------------------------

    def read_lock(self, request_key: str) -> str | None:
        """The cached lock of ``request_key``. The key is kept beside the lock, not in it: the
        key covers paths of this machine, the lock must not. A file of an older reprun (the key
        inside the lock's header) is not used: it is resolved again into a portable lock."""
        try:
            text = (self.locks / f"{request_key}.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        first, _, lock = text.partition("\n")
        return lock if first == _request_line(request_key) else None

    def write_lock(self, request_key: str, content: str) -> None:
        self.locks.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.locks / f"{request_key}.txt",
                          f"{_request_line(request_key)}\n{content}")

    # --- environments ----------------------------------------------------------------------

    def lock_text(self, request_key: str, resolve: Callable[[], str], refresh: bool,
                  on_wait: Callable[[], None]) -> str:
        """The cached lock of ``request_key``, else ``resolve()``'s, resolved once under the
        key's file lock and cached; ``refresh`` always resolves anew."""
        if not refresh and (text := self.read_lock(request_key)) is not None:
            return text
        with self.locked(f"lock-{request_key}", on_wait=on_wait):
            if not refresh and (text := self.read_lock(request_key)) is not None:
                return text
            text = resolve()
            self.write_lock(request_key, text)
        return text

    def find_or_build(self, key: str, build: Callable[[], CachedEnv],
                      on_wait: Callable[[], None]) -> CachedEnv:
        """The complete entry ``key``; when missing it is built once, under the key's file lock
        (a second process waits, then finds it). A partial or corrupt entry is never trusted."""
        self.hold(key)
        entry = self.find(key)
        if entry is None:
            with self.locked(key, on_wait=on_wait):
                entry = self.find(key)
                if entry is None:
                    self.discard(key)
                    entry = build()
        return entry

    def find(self, key: str) -> CachedEnv | None:
        """The finished, intact environment of ``key``, or None. Spawns nothing."""
        link = self.envs / key
        try:
            target = link.resolve(strict=True)
            marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError, RuntimeError):
            return None
        if not isinstance(marker, dict) or marker.get("key") != key:
            return None
        python = marker.get("python")  # a conda prefix may hold no python
        required = [*([python] if python is not None else []), *marker.get("files", [])]
        if not all(isinstance(rel, str) and rel and (target / rel).exists() for rel in required):
            return None
        return CachedEnv(key, target, marker)

    @contextlib.contextmanager
    def locked(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the file lock of ``key`` (blocking); ``on_wait`` runs if another process has it."""
        self.keys.mkdir(parents=True, exist_ok=True)
        with (self.keys / f"{key}.flock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def new_build_dir(self, key: str) -> Path:
        """A fresh directory to build ``key`` in; stale builds of the key are removed first.

        Call with the key's lock held: then no other process is building this key.
        """
        self.builds.mkdir(parents=True, exist_ok=True)
        current = self._target(key)
        for stale in self.builds.glob(f"{key}.*"):
            if stale != current:
                shutil.rmtree(stale, ignore_errors=True)
        return self.builds / f"{key}.{uuid.uuid4().hex[:12]}"

    def publish(self, key: str, build: Path, marker: dict[str, Any]) -> CachedEnv:
        """Mark ``build`` complete and point the key at it atomically."""
        marker = {**marker, "key": key, "created": time.time()}
        atomic_write_text(build / MARKER, json.dumps(marker, indent=2))
        self.envs.mkdir(parents=True, exist_ok=True)
        old = self._target(key)
        tmp = self.envs / f".{key}.{uuid.uuid4().hex[:8]}"
        tmp.symlink_to(build)
        tmp.replace(self.envs / key)
        if old is not None and old != build:
            shutil.rmtree(old, ignore_errors=True)
        return CachedEnv(key, build, marker)

    def discard(self, key: str) -> None:
        """Remove the entry of ``key`` (with its lock held)."""
        target = self._target(key)
        (self.envs / key).unlink(missing_ok=True)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)

    def _target(self, key: str) -> Path | None:
        link = self.envs / key
        try:
            return self.builds / link.readlink().name
        except OSError:
            return None

    # --- usage -----------------------------------------------------------------------------

    def touch(self, entry: CachedEnv, project: Path) -> None:
        """Note that ``project`` used the environment now (cheap: no fsync, no rewrite)."""
        used = entry.path / USED
        try:
            used.touch()
            projects = entry.path / PROJECTS
            known = projects.read_text(encoding="utf-8").splitlines() if projects.exists() else []
            if str(project) not in known:
                with projects.open("a", encoding="utf-8") as handle:
                    handle.write(f"{project}\n")
        except OSError:
            pass

    def entries(self) -> list[EnvEntry]:
        """Every published environment, intact or not."""
        if not self.envs.is_dir():
            return []
        found = []
        for link in sorted(self.envs.iterdir()):
            if link.name.startswith("."):
                continue
            entry = self.find(link.name)
            target = self._target(link.name)
            found.append(EnvEntry.of(link.name, target, entry))
        return found

    def orphans(self) -> list[Path]:
        """Build directories no key points at (killed or failed builds), not being built now."""
        if not self.builds.is_dir():
            return []
        live = {t for t in (self._target(p.name) for p in self._links()) if t is not None}
        result = []
        for build in sorted(self.builds.iterdir()):
            key = build.name.split(".", 1)[0]
            if build not in live and not self._busy(key):
                result.append(build)
        return result

    def _links(self) -> list[Path]:
        return [p for p in self.envs.iterdir() if not p.name.startswith(".")] \
            if self.envs.is_dir() else []

    def _busy(self, key: str) -> bool:
        return _held_elsewhere(self.keys / f"{key}.flock")

    def hold(self, key: str) -> None:
        """Mark the environment of ``key`` as in use by this process until it exits (a shared
        lock on ``keys/<key>.use``): `remove` then leaves it alone. Waits while it is being
        removed (the caller then finds it gone and builds it again)."""
        path = self.keys / f"{key}.use"
        if path in _HELD:
            return
        self.keys.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        fcntl.flock(handle, fcntl.LOCK_SH)
        _HELD[path] = handle  # released when the process ends: a run lasts as long as reprun

    def in_use(self, key: str) -> bool:
        """Whether a running reprun uses or builds the environment of ``key``."""
        return self._busy(key) or _held_elsewhere(self.keys / f"{key}.use")

    def remove(self, key: str) -> bool:
        """Delete the environment of ``key`` unless it is being built or used by a running
        reprun; True if removed."""
        if self._busy(key):
            return False
        self.keys.mkdir(parents=True, exist_ok=True)
        with (self.keys / f"{key}.use").open("a") as use:
            try:
                fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            with self.locked(key):
                self.discard(key)
        return True


def _held_elsewhere(path: Path) -> bool:
    """Whether another open file holds a lock on ``path`` (an exclusive lock cannot be had)."""
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@frozen
class EnvEntry:
    """A published environment as `reprun env list` shows it."""

    key: str
    path: Path | None
    ok: bool
    manager: str
    python: str
    size: int
    last_used: float
    projects: tuple[str, ...]

    @classmethod
    def of(cls, key: str, target: Path | None, entry: CachedEnv | None) -> EnvEntry:
        marker = entry.marker if entry else {}
        size, used, projects = 0, 0.0, tuple[str, ...]()
        if target is not None and target.is_dir():
            size = dir_size(target)
            used = _mtime(target / USED) or _mtime(target / MARKER) or _mtime(target)
            with contextlib.suppress(OSError):
                projects = tuple((target / PROJECTS).read_text(encoding="utf-8").split())
        return cls(key, target, entry is not None, str(marker.get("manager", "?")),
                   str(marker.get("python_version", "?")), size, used, projects)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total
