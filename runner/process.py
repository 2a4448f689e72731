"""The one subprocess seam of reprun.

`capture` runs a short helper command (git, python -c ...) and returns its output; `Pending` is
one started in the background (its own process group), to collect later or cancel.
`GroupProcess` starts a long command in its own process group, pumps its output to a sink as it is
produced, and stops the whole group in stages: interrupt, terminate, kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runner.frozen import frozen

Sink = Callable[[str, bytes], None]
POLL_S = 0.05


@frozen
class Completed:
    """A finished helper command: its argv, exit code and output."""

    argv: tuple[str, ...]
    returncode: int
    out: bytes
    err: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")


def capture(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> Completed:
    """Run a short command to completion and capture its output.

    Raises FileNotFoundError when the program does not exist and TimeoutError after ``timeout``.
    """
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"'{argv[0]}' did not finish within {timeout:g} s") from exc
    return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


class Pending:
    """A short helper command started in the background, in its own process group."""

    def __init__(self, argv: Sequence[str], cwd: Path | None, env: Mapping[str, str]) -> None:
        self.argv = tuple(argv)
        self._proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )

    def result(self, timeout: float = 120.0) -> Completed:
        """Wait for it and capture its output, as `capture` would; TimeoutError after
        ``timeout`` (the command is then stopped)."""
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.cancel()
            raise TimeoutError(f"'{self.argv[0]}' did not finish within {timeout:g} s") from exc
        return Completed(self.argv, self._proc.returncode, out, err)

    def cancel(self) -> None:
        """Stop its whole group if it still runs (SIGTERM, SIGKILL after a second)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(1.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
            self._proc.communicate(timeout=1.0)


class GroupProcess:
    """A command running in a new session (its own process group), output sent to ``sink``."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], sink: Sink) -> None:
        self._proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
        self.pid = self._proc.pid
        self.pgid = self.pid
        self._pumps = [
            _pump(self._proc.stdout, "stdout", sink),
            _pump(self._proc.stderr, "stderr", sink),
        ]

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def group_alive(self) -> bool:
        """True while the leader or any other live (non-zombie) member of the group exists."""
        if self._proc.poll() is None:
            return True
        return bool(group_members(self.pgid))

    def stop(self, first: int, grace: float, hurry: threading.Event | None = None) -> None:
        """Stop the group: ``first`` (SIGINT or SIGTERM), SIGTERM half-way, SIGKILL at ``grace``.

        Setting ``hurry`` (a second Ctrl-C) skips straight to SIGKILL.
        """
        stages = [(0.0, first)]
        if first != signal.SIGTERM:
            stages.append((grace / 2, signal.SIGTERM))
        stages.append((grace, signal.SIGKILL))
        start = time.monotonic()
        for at, sig in stages:
            while self.group_alive() and time.monotonic() - start < at:
                if hurry is not None and hurry.is_set():
                    break
                time.sleep(POLL_S)
            if not self.group_alive():
                break
            self.signal_group(sig)
        while self._proc.poll() is None:
            time.sleep(POLL_S)

    def finish_output(self, timeout: float) -> bool:
        """Wait for the output pipes to close; False if some process still holds them."""
        deadline = time.monotonic() + timeout
        for pump in self._pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        return not any(p.is_alive() for p in self._pumps)


def _pump(stream: object, name: str, sink: Sink) -> threading.Thread:
    fd = stream.fileno()  # type: ignore[attr-defined]

    def run() -> None:
        try:
            while chunk := os.read(fd, 65536):
                sink(name, chunk)
        except OSError:
            pass
        finally:
            stream.close()  # type: ignore[attr-defined]

    thread = threading.Thread(target=run, name=f"reprun-{name}", daemon=True)
    thread.start()
    return thread


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of group ``pgid``; uses /proc, falls back to killpg."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry / "stat")
        if fields and fields[2] != "Z" and fields[4] == str(pgid):
            members.append(int(entry.name))
    return members


def _stat_fields(path: Path) -> list[str]:
    """Fields of /proc/PID/stat with the command name (field 2) kept whole."""
    try:
        text = path.read_text()
    except OSError:
        return []
    head, _, tail = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    return [pid, comm, *tail.split()]


def hostname() -> str:
    """This machine's name, as socket.gethostname() gives it (without importing socket)."""
    return os.uname().nodename


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (ticks since boot), to tell it from a later process with its pid."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return int(fields[21]) if len(fields) > 21 else None


def process_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start_ticks`` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start_ticks is None:
        return True
    current = process_start_ticks(pid)
    return current is None or current == start_ticks
