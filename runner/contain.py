"""Containment: find and stop every process a command started, whatever its session or group.

A command can leave its process group (``setsid``) or daemonise (fork twice, so that its parent
is no longer the command); a process group then no longer covers what it started. Two ways to
keep hold of all of it, chosen once per reprun process:

- ``cgroup``: each command runs in a cgroup v2 of its own, created under reprun's own cgroup
  (as root, or where the hierarchy is delegated to the user). Every descendant stays in it;
  ``cgroup.kill`` (or a repeated SIGKILL of ``cgroup.procs``) stops them all, then the cgroup is
  removed.
- ``subreaper``: reprun becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so that orphaned
  descendants are re-parented to reprun instead of init; the tree is the command's descendants
  plus those orphans (children of reprun that reprun did not start itself), found in /proc.

``REPRUN_INTERNAL_CONTAINMENT=subreaper`` forces the second way; it exists for reprun's own tests
of that path and is not a user setting.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

FORCE_VARIABLE = "REPRUN_INTERNAL_CONTAINMENT"
CGROUP = "cgroup"
SUBREAPER = "subreaper"
PREFIX = "reprun-"
EMPTY_WAIT_S = 5.0
POLL_S = 0.02
# Moves the shell into the cgroup, then becomes the command: nothing runs outside it.
ENTER = 'echo 0 > "$1" && shift && exec "$@"'
PR_SET_CHILD_SUBREAPER = 36



class _State:
    """What this reprun process knows about its containment (one per process)."""

    def __init__(self) -> None:
        self.probed = False
        self.cgroup_parent: Path | None = None
        self.subreaper = False
        self.sequence = 0


_lock = threading.Lock()
_started: set[int] = set()  # children reprun started itself (not orphans adopted as subreaper)
_state = _State()


def register(pid: int) -> None:
    """Note a child reprun started itself, so that the subreaper sweep never takes it for an
    orphan of another command."""
    with _lock:
        _started.add(pid)


def unregister(pid: int) -> None:
    with _lock:
        _started.discard(pid)


class Tree:
    """Every process of one command; ``members`` are the live ones."""

    kind: str = ""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The argv that starts ``argv`` inside the tree."""
        return list(argv)

    def started(self, pid: int) -> None:
        """The command's first process is ``pid``."""

    def members(self) -> list[int]:
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL every member, until none is left (or a few seconds have passed)."""
        deadline = time.monotonic() + EMPTY_WAIT_S
        while self.members() and time.monotonic() < deadline:
            self.signal(signal.SIGKILL)
            time.sleep(POLL_S)

    def close(self) -> None:
        """Kill what is left and release the tree's resources."""
        self.kill()


class CgroupTree(Tree):
    kind = CGROUP

    def __init__(self, path: Path) -> None:
        self.path = path

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["/bin/sh", "-c", ENTER, "reprun-enter", str(self.path / "cgroup.procs"), *argv]

    def members(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self) -> None:
        knob = self.path / "cgroup.kill"
        try:
            knob.write_text("1")
        except OSError:
            super().kill()  # kernels before 5.14: no cgroup.kill
            return
        deadline = time.monotonic() + EMPTY_WAIT_S
        while self.members() and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def close(self) -> None:
        self.kill()
        deadline = time.monotonic() + EMPTY_WAIT_S
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:  # EBUSY while the last processes are being torn down
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return
            time.sleep(POLL_S)


class ReaperTree(Tree):
    kind = SUBREAPER

    def __init__(self) -> None:
        self.root: int | None = None
        me = os.getpid()
        # Children reprun already had (started by other code): never taken for orphans.
        self.before = {pid for pid, (ppid, _) in _process_table().items() if ppid == me}

    def started(self, pid: int) -> None:
        self.root = pid

    def members(self) -> list[int]:
        table = _process_table()
        me = os.getpid()
        with _lock:
            ours = _started | self.before
        roots = {pid for pid, (ppid, _) in table.items() if ppid == me and pid not in ours}
        if self.root is not None and self.root in table:
            roots.add(self.root)
        found = _descendants(table, roots)
        return [pid for pid in found if table[pid][1] != "Z"]

    def close(self) -> None:
        self.kill()
        self.reap()

    def reap(self) -> None:
        """Collect adopted orphans that have exited (they are reprun's zombies now)."""
        with _lock:
            ours = _started | self.before
        me = os.getpid()
        for pid, (ppid, state) in _process_table().items():
            if ppid == me and state == "Z" and pid not in ours:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)


def new_tree() -> Tree:
    """A tree for the next command: a cgroup where the machine allows it, else the subreaper."""
    forced = os.environ.get(FORCE_VARIABLE)
    if forced != SUBREAPER:
        parent = _cgroup_parent()
        if parent is not None:
            path = _make_cgroup(parent)
            if path is not None:
                return CgroupTree(path)
    _become_subreaper()
    return ReaperTree()


def _make_cgroup(parent: Path) -> Path | None:
    with _lock:
        _state.sequence += 1
        name = f"{PREFIX}{os.getpid()}-{_state.sequence}"
    path = parent / name
    try:
        path.mkdir()
    except OSError:
        with _lock:
            _state.cgroup_parent = None  # not allowed after all: the subreaper from now on
        return None
    return path


def _cgroup_parent() -> Path | None:
    """reprun's own cgroup v2 directory if reprun may create cgroups in it, else None."""
    with _lock:
        if not _state.probed:
            _state.probed = True
            _state.cgroup_parent = _find_own_cgroup()
            if _state.cgroup_parent is not None:
                _remove_stale(_state.cgroup_parent)
        return _state.cgroup_parent


def _find_own_cgroup() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None or own.endswith("(deleted)"):
        return None
    for line in mounts:
        fields = line.split()
        sep = fields.index("-") if "-" in fields else -1
        if sep < 0 or fields[sep + 1] != "cgroup2" or fields[3] != "/":
            continue
        path = Path(fields[4]) / own.lstrip("/")
        procs = path / "cgroup.procs"
        if procs.is_file() and os.access(path, os.W_OK) and os.access(procs, os.W_OK):
            return path if _is_domain(path) else None
    return None


def _is_domain(path: Path) -> bool:
    """A threaded cgroup takes threads, not processes (the root cgroup has no type: a domain)."""
    try:
        return (path / "cgroup.type").read_text().strip() == "domain"
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _remove_stale(parent: Path) -> None:
    """Empty cgroups left by reprun processes that were killed before removing them."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            name = entry.name
            if not name.startswith(PREFIX):
                continue
            pid = name[len(PREFIX):].partition("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    entry.rmdir()  # fails (EBUSY) while processes are still in it: kept


def _become_subreaper() -> None:
    with _lock:
        if _state.subreaper:
            return
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _state.subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process in /proc (raw reads: this runs often)."""
    table: dict[int, tuple[int, str]] = {}
    try:
        entries = [entry.name for entry in os.scandir("/proc")]
    except OSError:
        return table
    for name in entries:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 1024)
            finally:
                os.close(fd)
        except OSError:
            continue
        fields = data.rpartition(b")")[2].split(None, 2)
        if len(fields) > 1:
            table[int(name)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
    return table


def _descendants(table: dict[int, tuple[int, str]], roots: set[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = list(roots)
    seen = set(todo)
    while todo:
        pid = todo.pop()
        found.append(pid)
        for child in children.get(pid, ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return found
