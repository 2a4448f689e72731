"""The local backend: ``bash -c COMMAND`` in the project directory, in its own session and
containment tree: every process it starts is stopped with it, whatever its session."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, ClassVar

from backends.base import Outcome, RunHandle, RunRequest
from runner.process import GroupProcess
from runner.record.types import BackendInfo, Status, now

LEFTOVER_WAIT_S = 1.0


class LocalBackend:
    name: ClassVar[str] = "local"

    def submit(self, request: RunRequest) -> RunHandle:
        return LocalHandle(request)


class LocalHandle:
    """A running local command. Output goes to the log file and, if asked, the terminal."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self._log: BinaryIO | None = request.log_path.open("ab", buffering=0)
        self._log_lock = threading.Lock()
        self._log_bytes = 0
        self._log_error: str | None = None  # why the log stopped short (a full disk)
        self._echo = request.echo
        self._stop_signal: int | None = None
        self._hurry = threading.Event()
        self._stopper: threading.Thread | None = None
        self._outcome: Outcome | None = None
        self._leftovers = 0
        self.started_at = now()
        self._proc = GroupProcess(
            ["bash", "-c", request.command], request.workdir, request.env, self._sink
        )

    def _sink(self, stream: str, chunk: bytes) -> None:
        """The log and the terminal, each on its own: one failing never stops the other."""
        with self._log_lock:
            self._write_log(chunk)
        if self._echo:
            out: BinaryIO = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):  # the terminal went away: the log goes on
                self._echo = False

    def _write_log(self, chunk: bytes) -> None:
        if self._log is None:
            return
        view = memoryview(chunk)
        try:
            while view:
                written = self._log.write(view) or 0
                self._log_bytes += written
                view = view[written:]
        except OSError as exc:
            self._log_error = (exc.strerror or str(exc)).lower()
            self._close_log()
            self.request.notify(f"warning: log truncated: {self._log_error}; the output still "
                                "reaches the terminal")

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def cancel(self, first_signal: int = signal.SIGINT) -> None:
        """Start the staged stop of the whole group; a second call kills at once."""
        if self._stop_signal is not None:
            self._hurry.set()
            return
        self._stop_signal = first_signal
        self._stopper = threading.Thread(
            target=self._proc.stop, args=(first_signal, self.request.grace_period, self._hurry),
            name="reprun-stop", daemon=True,
        )
        self._stopper.start()

    def facts(self) -> Mapping[str, Any]:
        return MappingProxyType({"containment": self._proc.containment})

    def status(self) -> Status:
        if self._outcome is not None:
            return self._outcome.status
        return Status.RUNNING

    def wait(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        self._proc.wait(timeout=None)  # a signal handler calling cancel() does not end this wait
        reason = None
        if self._stopper is not None and self._stop_signal is not None:
            self._stopper.join()  # until the whole group is gone
            reason = f"stopped by {signal.Signals(self._stop_signal).name}"
        else:
            # The command exited; what it left running (daemons included) is stopped too.
            self._leftovers = self._proc.stop_leftovers(self.request.grace_period, self._hurry)
        self._proc.close()
        self._proc.finish_output(LEFTOVER_WAIT_S)
        with self._log_lock:
            self._close_log()
        self._outcome = self._make_outcome(self._proc.poll(), reason)
        return self._outcome

    def _make_outcome(self, returncode: int | None, reason: str | None) -> Outcome:
        code = returncode if returncode is None or returncode >= 0 else 128 - returncode
        facts: dict[str, Any] = {"containment": self._proc.containment}
        if self._leftovers:
            facts["stopped_leftover_processes"] = self._leftovers
        if self._log_error is not None:
            facts["log_truncated"] = f"{self._log_error} after {self._log_bytes} bytes"
        if reason is not None and self._stop_signal is not None:
            status = Status.KILLED
            facts["signal"] = signal.Signals(self._stop_signal).name
        elif code == 0:
            status = Status.FINISHED
        else:
            status = Status.FAILED
            reason = f"command exited with code {code}"
        return Outcome(status, code, self.started_at, now(), reason, MappingProxyType(facts))

    def info(self) -> BackendInfo:
        return BackendInfo(name=LocalBackend.name)

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle
