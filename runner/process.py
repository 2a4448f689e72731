"""The one subprocess seam of reprun.

`capture` runs a short helper command (git, python -c ...) and returns its output; `Pending` is
one started in the background, to collect later or cancel.
`GroupProcess` starts a long command in its own session and containment tree (runner.contain),
pumps its output to a sink as it is produced, and stops everything the command started, whatever
its session, in stages: interrupt, terminate, kill.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from runner.contain import new_tree, register, unregister
from runner.frozen import frozen

Sink = Callable[[str, bytes], None]
POLL_S = 0.05
STOP_GRACE_S = 1.0  # helper commands: SIGTERM, then SIGKILL a second later
LEFTOVER_WAIT_S = 1.0  # how long what a command left behind may take to end by itself


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
    contain: bool = False,
) -> Completed:
    """Run a short command to completion and capture its output.

    ``contain`` runs it in a tree of its own (runner.contain): whatever it starts is stopped when
    it ends, even processes that left its session. Raises FileNotFoundError when the program does
    not exist and TimeoutError after ``timeout``.
    """
    if contain:
        return _capture_contained(argv, cwd, env if env is not None else os.environ, timeout)
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    register(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise TimeoutError(f"'{argv[0]}' did not finish within {timeout:g} s") from exc
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        unregister(proc.pid)
    return Completed(tuple(argv), proc.returncode, out, err)


def _capture_contained(
    argv: Sequence[str], cwd: Path | None, env: Mapping[str, str], timeout: float
) -> Completed:
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    # In reprun's own process group, as an uncontained helper is: a Ctrl-C at the terminal, or a
    # signal to reprun's group, reaches it too.
    group = GroupProcess(argv, cwd or Path.cwd(), env, lambda name, c: chunks[name].append(c),
                         new_session=False)
    try:
        code = group.wait(timeout)
        if code is None:
            group.stop(signal.SIGTERM, STOP_GRACE_S)
            raise TimeoutError(f"'{argv[0]}' did not finish within {timeout:g} s")
        group.stop_leftovers(STOP_GRACE_S)
    except BaseException:
        group.stop(signal.SIGTERM, STOP_GRACE_S)
        raise
    finally:
        group.close()
    group.finish_output(STOP_GRACE_S)
    return Completed(tuple(argv), code, b"".join(chunks["stdout"]), b"".join(chunks["stderr"]))


class Pending:
    """A short helper command started in the background, in a tree of its own."""

    def __init__(self, argv: Sequence[str], cwd: Path | None, env: Mapping[str, str]) -> None:
        self.argv = tuple(argv)
        self._out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self._group = GroupProcess(argv, cwd or Path.cwd(), env,
                                   lambda name, chunk: self._out[name].append(chunk))

    def result(self, timeout: float = 120.0) -> Completed:
        """Wait for it and capture its output, as `capture` would; TimeoutError after
        ``timeout`` (the command is then stopped)."""
        code = self._group.wait(timeout)
        if code is None:
            self.cancel()
            raise TimeoutError(f"'{self.argv[0]}' did not finish within {timeout:g} s")
        self._group.stop_leftovers(STOP_GRACE_S)
        self._group.close()
        self._group.finish_output(STOP_GRACE_S)
        out = b"".join(self._out["stdout"])
        return Completed(self.argv, code, out, b"".join(self._out["stderr"]))

    def cancel(self) -> None:
        """Stop everything it started if it still runs (SIGTERM, SIGKILL after a second)."""
        self._group.stop(signal.SIGTERM, STOP_GRACE_S)
        self._group.close()
        self._group.finish_output(STOP_GRACE_S)


class GroupProcess:
    """A command running in a new session (unless ``new_session`` is false) and a tree of its own
    (runner.contain), output sent to ``sink``. Stopping it stops every process it started,
    whatever their session."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], sink: Sink,
                 new_session: bool = True) -> None:
        _check_program(argv[0], env)
        self._tree = new_tree()
        self.containment = self._tree.kind
        try:
            self._proc = subprocess.Popen(
                self._tree.wrap(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session,
                close_fds=True,
            )
        except BaseException:
            self._tree.close()
            raise
        self.pid = self._proc.pid
        register(self.pid)
        guard = _guards[-1] if _guards else None
        if new_session and guard is not None:
            guard.send(f"+{self.pid}")
        self._tree.started(self.pid)
        self._closed = False
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

    def signal_tree(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self._tree.kill()
        else:
            self._tree.signal(sig)

    def tree_alive(self) -> bool:
        """True while the first process or any other live process of the tree exists."""
        return self._proc.poll() is None or bool(self._tree.members())

    def stop(self, first: int, grace: float, hurry: threading.Event | None = None) -> None:
        """Stop the tree: ``first`` (SIGINT or SIGTERM), SIGTERM half-way, SIGKILL at ``grace``.

        Each signal goes to every live process of the tree. Setting ``hurry`` (a second Ctrl-C)
        skips straight to SIGKILL.
        """
        stages = [(0.0, first)]
        if first != signal.SIGTERM:
            stages.append((grace / 2, signal.SIGTERM))
        stages.append((grace, signal.SIGKILL))
        start = time.monotonic()
        for at, sig in stages:
            while self.tree_alive() and time.monotonic() - start < at:
                if hurry is not None and hurry.is_set():
                    break
                time.sleep(POLL_S)
            if not self.tree_alive():
                break
            self.signal_tree(sig)
        while self._proc.poll() is None:
            time.sleep(POLL_S)

    def stop_leftovers(self, grace: float, hurry: threading.Event | None = None) -> int:
        """Once the first process has exited: stop what it left running (SIGTERM, SIGKILL after
        ``grace``) and return how many processes that was."""
        deadline = time.monotonic() + LEFTOVER_WAIT_S
        while (left := self._tree.members()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if left:
            self.stop(signal.SIGTERM, grace, hurry)
        return len(left)

    def close(self) -> None:
        """Kill anything left and release the tree (remove its cgroup); idempotent."""
        if not self._closed:
            self._closed = True
            self._tree.close()
            unregister(self.pid)
            for guard in _guards:
                guard.send(f"-{self.pid}")

    def finish_output(self, timeout: float) -> bool:
        """Wait for the output pipes to close; False if some process still holds them."""
        deadline = time.monotonic() + timeout
        for pump in self._pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        return not any(p.is_alive() for p in self._pumps)


# The guard: reads "+PGID" and "-PGID" lines; "bye" ends it quietly. At the end of its input
# without "bye" (the reprun process that holds the pipe died: kill -9), it sends SIGTERM to each
# process group still listed, and SIGKILL to those left after the grace period.
GUARD = """
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    word = line.strip()
    if word == "bye":
        sys.exit(0)
    if word[:1] in "+-" and word[1:].isdigit():
        (groups.add if word[0] == "+" else groups.discard)(int(word[1:]))
for sig in (signal.SIGTERM, signal.SIGKILL):
    for group in list(groups):
        try:
            os.killpg(group, sig)
        except OSError:
            groups.discard(group)
    time.sleep(float(sys.argv[1]))
"""


class ChildGuard:
    """A small watchdog process that ends the process groups of the commands this reprun
    process started (`GroupProcess`) if reprun dies without closing it (kill -9): they do not
    go on unowned. It holds the read end of a pipe; the kernel closes the write end with
    reprun. Works on any POSIX system (no prctl)."""

    def __init__(self, grace: float) -> None:
        import sys

        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GUARD, str(grace)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            close_fds=True, env={"PATH": os.environ.get("PATH", os.defpath)})
        register(self._proc.pid)

    def send(self, word: str) -> None:
        with self._lock:
            stdin = self._proc.stdin
            if stdin is None or stdin.closed:
                return
            try:
                stdin.write(f"{word}\n".encode())
                stdin.flush()
            except OSError:  # the guard is gone: nothing to tell
                stdin.close()

    def close(self) -> None:
        self.send("bye")
        with self._lock:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        unregister(self._proc.pid)


_guards: list[ChildGuard] = []  # the one guard of this process while one is open


@contextlib.contextmanager
def guarded_children(grace: float = 2.0) -> Iterator[None]:
    """While inside: the commands started with `GroupProcess` in a new session are ended
    (SIGTERM, SIGKILL after ``grace`` seconds) if this process is killed outright."""
    if _guards:  # nested: the outer guard covers it
        yield
        return
    guard = ChildGuard(grace)
    _guards.append(guard)
    try:
        yield
    finally:
        _guards.remove(guard)
        guard.close()


def _check_program(program: str, env: Mapping[str, str]) -> None:
    """FileNotFoundError or PermissionError as Popen would raise them, before a wrapper runs."""
    if os.sep in program:
        path = Path(program)
        if not path.is_absolute():
            return  # relative to the command's directory: Popen of the wrapper tells
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if not os.access(path, os.X_OK) or path.is_dir():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


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


@contextlib.contextmanager
def stop_signals_to(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block, the previous handlers after it.
    Python lets only the main thread set handlers: elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
