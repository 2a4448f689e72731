"""One step with the same inputs at a time, across processes: two pipeline runs of one project
started together must not both run a step that one of them could reuse from the other.

The lock is a file under REPRUN_HOME named by what decides the step's result as far as it is
known before its environment is resolved (project directory, entry point, backend, parameter
values); the step is planned, reused or run while it is held, so that the second process finds
the first one's run FINISHED and reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from runner.errors import Interrupted

LOCKS = "locks"
POLL_S = 0.1


def lock_path(home: Path, facts: Mapping[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
    return home / LOCKS / f"step-{digest[:32]}.lock"


@contextlib.contextmanager
def held(path: Path, stopped: Callable[[], int | None],
         waiting: Callable[[], None]) -> Iterator[None]:
    """Hold the lock at ``path``; ``waiting`` is called once if another process holds it, and
    the wait ends with `Interrupted` when ``stopped`` gives a signal number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                signum = stopped()
                if signum is not None:
                    raise Interrupted(signum) from None
                if not told:
                    waiting()
                    told = True
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # closing releases the lock
