"""A sweep taken by one reprun process at a time, and what a killed one left running.

`taken` holds an exclusive lock on ``sweeps/<id>/.lock`` (``flock``: the kernel lets it go when
the process ends, even by ``kill -9``) for as long as a ``sweep resume`` runs; a second resume of
the same sweep is refused in one line instead of running the same trials twice and overwriting
``sweep.json``.

`stop_left_running`: a sweep whose reprun process was killed (``kill -9``: nothing could be
stopped) leaves its running trials' commands behind. The next ``sweep show`` or ``sweep resume``
finds them by the ``REPRUN_OUTPUT_DIR`` each trial's command (and all it started) carries in its
environment, and stops them (SIGKILL).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from runner.errors import ReprunError, UsageError
from runner.process import hostname, process_alive
from runner.record.store import RunStore
from runner.record.types import Status
from runner.sweep.record import SweepRecord

LOCK = ".lock"


@contextlib.contextmanager
def taken(directory: Path, sweep_id: str) -> Iterator[None]:
    """The sweep held by this process; UsageError when another process holds it."""
    import fcntl

    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        raise UsageError(f"sweep {sweep_id} is being resumed by another reprun process",
                         hint="wait for it to end, or stop it (Ctrl-C) before resuming it"
                         ) from None
    try:
        yield
    finally:
        os.close(fd)


def stop_left_running(record: SweepRecord, runs: RunStore) -> int:
    """When ``record`` (as saved) says RUNNING but its reprun process is gone, SIGKILL the
    processes of its unfinished trials; how many were stopped."""
    runner = record.runner
    if record.status is not Status.RUNNING or runner is None or \
            runner.hostname != hostname() or process_alive(runner.pid, runner.start_ticks):
        return 0
    from runner.tracking.query import parse_where

    markers = set()  # the sweep's runs that did not finish (the record may not name them yet)
    for summary in runs.list(where=parse_where(f"sweep = {record.sweep_id}")):
        if summary.status != Status.FINISHED.value:
            with contextlib.suppress(ReprunError):
                output_dir = runs.load(summary.run_id).output_dir
                markers.add(f"REPRUN_OUTPUT_DIR={output_dir}".encode())
    stopped: set[int] = set()
    for _ in range(5):  # a process may start another while they are stopped
        found = [pid for pid in _carrying(markers) if pid != os.getpid()]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                stopped.add(pid)
    return len(stopped)


def _carrying(markers: set[bytes]) -> list[int]:
    """The processes whose environment holds one of ``markers`` (a whole entry)."""
    if not markers:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item in markers for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found
