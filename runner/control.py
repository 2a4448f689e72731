"""One run among many that a caller runs at once (a sweep's trial, a pipeline's step): its run id
and handle, and the caller's stop reaching it. `HeldRun` is the `runner.execute.Control` they
share."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from runner.errors import Interrupted

if TYPE_CHECKING:
    from backends.base import RunHandle


class Stopping(Protocol):
    """The caller: ``signum`` is the signal that stops every run (None while none came), read
    and set under ``lock``."""

    @property
    def lock(self) -> AbstractContextManager[object]: ...

    @property
    def signum(self) -> int | None: ...


class HeldRun:
    """A run's id and handle; a stop that came before its command started cancels it at once."""

    def __init__(self, caller: Stopping) -> None:
        self._caller = caller
        self.run_id: str | None = None
        self.handle: RunHandle | None = None
        self.ready = threading.Event()  # the command started, or the run ended

    def begun(self, run_id: str) -> None:
        self.run_id = run_id

    def submitting(self) -> None:
        if self._caller.signum is not None:
            raise Interrupted(self._caller.signum)

    def started(self, handle: RunHandle) -> None:
        with self._caller.lock:
            self.handle = handle
            signum = self._caller.signum
        if signum is not None:
            handle.cancel(signum)
        self.ready.set()

    def stop(self, signum: int) -> None:
        if self.handle is not None:
            self.handle.cancel(signum)  # a second call hurries the stop
