"""The local backend: ``bash -c COMMAND`` in the project directory, in its own process group."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, ClassVar

from backends.base import Outcome, RunRequest
from runner.process import GroupProcess
from runner.record import Status, now

LEFTOVER_WAIT_S = 1.0


class LocalBackend:
    name: ClassVar[str] = "local"

    def submit(self, request: RunRequest) -> LocalHandle:
        return LocalHandle(request)


class LocalHandle:
    """A running local command. Output goes to the log file and, if asked, the terminal."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self._log = request.log_path.open("ab")
        self._log_lock = threading.Lock()
        self._stop_signal: int | None = None
        self._hurry = threading.Event()
        self._outcome: Outcome | None = None
        self.started_at = now()
        self._proc = GroupProcess(
            ["bash", "-c", request.command], request.workdir, request.env, self._sink
        )

    def _sink(self, stream: str, chunk: bytes) -> None:
        with self._log_lock:
            self._log.write(chunk)
            self._log.flush()
        if self.request.echo:
            out: BinaryIO = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
            out.write(chunk)
            out.flush()

    def cancel(self, first_signal: int = signal.SIGINT) -> None:
        if self._stop_signal is None:
            self._stop_signal = first_signal
        else:
            self._hurry.set()

    def facts(self) -> Mapping[str, Any]:
        return MappingProxyType({})

    def status(self) -> Status:
        if self._outcome is not None:
            return self._outcome.status
        return Status.RUNNING

    def wait(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        code = None
        while code is None and self._stop_signal is None:
            code = self._proc.wait(timeout=0.1)
        reason = None
        if self._stop_signal is not None:
            self._proc.stop(self._stop_signal, self.request.grace_period, self._hurry)
            reason = f"stopped by {signal.Signals(self._stop_signal).name}"
        elif not self._proc.finish_output(LEFTOVER_WAIT_S):
            # The command exited but left processes of its group running: stop them too.
            self._proc.stop(signal.SIGTERM, self.request.grace_period, self._hurry)
        self._proc.finish_output(LEFTOVER_WAIT_S)
        self._log.close()
        self._outcome = self._make_outcome(self._proc.poll(), reason)
        return self._outcome

    def _make_outcome(self, returncode: int | None, reason: str | None) -> Outcome:
        code = returncode if returncode is None or returncode >= 0 else 128 - returncode
        facts: dict[str, str] = {}
        if reason is not None and self._stop_signal is not None:
            status = Status.KILLED
            facts["signal"] = signal.Signals(self._stop_signal).name
        elif code == 0:
            status = Status.FINISHED
        else:
            status = Status.FAILED
            reason = f"command exited with code {code}"
        return Outcome(status, code, self.started_at, now(), reason, MappingProxyType(facts))

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle
