"""No process escapes a run: processes that left the command's session (setsid) or daemonised
(double fork) are stopped when the command ends and on Ctrl-C, by a cgroup per run where the
machine allows it, else as a child subreaper. Both paths are tested; the subreaper one is forced
with reprun's internal REPRUN_INTERNAL_CONTAINMENT variable (tests only)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, MakeProject, Reprun, pid_alive, wait_for

from runner.contain import FORCE_VARIABLE

MODES = ["cgroup", "subreaper"]

# A daemon the classic way: fork, setsid, fork again, the middle process exits; it writes its pid,
# closes its output (so reprun's pipes close) and ignores SIGINT and SIGTERM.
DAEMON = """\
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(sys.argv[1], "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        time.sleep(300)
    os._exit(0)
"""


def escaping_project(make_project: MakeProject, pids: Path, then: str) -> Path:
    """An entry point that starts a `setsid sleep` and a daemon, records their pids, then runs
    ``then``."""
    return make_project(
        f"""
        entry_points:
          main:
            command: "setsid sleep 300 > /dev/null 2>&1 & echo $! >> {pids};
              python3 daemon.py {pids}; {then}"
        """,
        files={"daemon.py": DAEMON},
    )


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """The file the escaping processes write their pids to; whatever is left is killed after
    the test, so that a failing test leaves nothing behind."""
    path = tmp_path / "pids"
    yield path
    for pid in read_pids(path):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def mode_env(mode: str) -> dict[str, str]:
    return {FORCE_VARIABLE: "subreaper"} if mode == "subreaper" else {}


def require_mode(record: dict[str, object], mode: str) -> None:
    """The run used the containment asked for; a machine without usable cgroups skips the cgroup
    case, except in CI where it must be there."""
    used = record["backend"]["facts"]["containment"]  # type: ignore[index]
    if used == mode:
        return
    reason = f"containment was {used!r}, not {mode!r}: this machine does not let reprun " \
             "create cgroups (cgroup v2, root or delegated)"
    if os.environ.get("REPRUN_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def no_cgroup_left(record: dict[str, object]) -> None:
    """The run's cgroup was removed: nothing named after this reprun process remains."""
    runner_pid = record["runner"]["pid"]  # type: ignore[index]
    own = Path("/proc/self/cgroup").read_text()
    assert f"reprun-{runner_pid}-" not in own
    for mount in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = mount.split()
        if "cgroup2" in fields[fields.index("-") + 1:][:1]:
            left = list(Path(fields[4]).rglob(f"reprun-{runner_pid}-*"))
            assert not left, left


@pytest.mark.parametrize("mode", MODES)
def test_nothing_outlives_a_run_that_ends(reprun: Reprun, make_project: MakeProject,
                                          tmp_path: Path, mode: str, pids: Path) -> None:
    project = escaping_project(make_project, pids, "echo done")
    result = reprun("run", str(project), "--env-manager", "local", "--grace-period", "1",
                    env=mode_env(mode))
    assert result.code == 0, result.stderr
    assert result.stdout.strip().endswith("done")
    started = read_pids(pids)
    assert len(started) == 2
    record = reprun.last_record()
    require_mode(record, mode)
    assert not [p for p in started if pid_alive(p)]
    assert record["status"] == "FINISHED"
    assert record["backend"]["facts"]["stopped_leftover_processes"] == 2
    shown = reprun("runs", "show", record["run_id"][:8])
    assert "leftovers:   2 process(es) the command left running were stopped" in shown.stdout
    if mode == "cgroup":
        no_cgroup_left(record)


@pytest.mark.parametrize("mode", MODES)
def test_nothing_outlives_ctrl_c(reprun: Reprun, make_project: MakeProject, tmp_path: Path,
                                 mode: str, pids: Path) -> None:
    project = escaping_project(make_project, pids, "sleep 300")
    proc = reprun.popen("run", str(project), "--env-manager", "local", "--grace-period", "1",
                        env=mode_env(mode))
    try:
        wait_for(lambda: len(read_pids(pids)) == 2)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    started = read_pids(pids)
    record = reprun.last_record()
    require_mode(record, mode)
    assert not [p for p in started if pid_alive(p)], record
    assert record["status"] == "KILLED" and record["backend"]["facts"]["signal"] == "SIGINT"
    if mode == "cgroup":
        no_cgroup_left(record)


@pytest.mark.parametrize("mode", MODES)
def test_helper_commands_are_contained(tmp_path: Path, mode: str, pids: Path) -> None:
    """What an environment builder runs (capture(contain=True), Pending) is stopped with it."""
    (tmp_path / "daemon.py").write_text(DAEMON)
    code = f"""
import sys
from runner.process import Pending, capture
argv = ["sh", "-c", "setsid sleep 300 > /dev/null 2>&1 & echo $!; {sys.executable} daemon.py pids"]
done = capture(argv, cwd=None, timeout=60, contain=True)
assert done.ok, done.stderr
later = Pending(argv, None, dict(__import__("os").environ)).result(60)
assert later.ok, later.stderr
print(done.stdout.strip(), later.stdout.strip())
"""
    env = {**os.environ, **mode_env(mode), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    started = [int(p) for p in done.stdout.split()] + read_pids(pids)
    pids.write_text("".join(f"{p}\n" for p in started))  # for the fixture, if this fails
    assert len(started) == 4
    assert not [p for p in started if pid_alive(p)]


def test_a_missing_program_is_still_file_not_found(tmp_path: Path) -> None:
    from runner.process import capture

    with pytest.raises(FileNotFoundError):
        capture(["reprun-no-such-program"], contain=True)
    with pytest.raises(FileNotFoundError):
        capture([str(tmp_path / "missing")], contain=True)
