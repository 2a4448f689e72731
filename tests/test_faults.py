"""A full disk and a read-only store, on real small file systems (a tmpfs mounted for the test):
the command's output always reaches the terminal, the record says what happened, reading
commands still read, and every error is one line."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun

LINES = 4000  # of about 1 kB each: twice what the 2 MiB file system holds
NOISY = f"""
entry_points:
  main:
    command: "python3 -c \\"[print(i, 'x' * 1000) for i in range({LINES})]\\""
"""
QUIET = "entry_points:\n  main:\n    command: 'echo hello'\n"

Mount = Callable[[str], Path]


def _must_mount(reason: str) -> None:
    """Skip where tmpfs cannot be mounted here, but fail in CI, which runs as root."""
    if os.environ.get("REPRUN_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"cannot mount a tmpfs for the fault tests: {reason}", pytrace=False)
    pytest.skip(f"cannot mount a tmpfs (needs root): {reason}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Mount]:
    """``small_fs("2m")`` mounts a tmpfs of that size; every mount is undone after the test,
    whether it passed or not."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(target)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            _must_mount(done.stderr.strip() or f"mount exited with {done.returncode}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def remount_read_only(target: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)


def fill(directory: Path) -> None:
    """Write zeros until the file system is full."""
    with (directory / "filler").open("wb") as handle:
        block = bytes(64 * 1024)
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), (directory / "filler-small").open("wb") as handle:
        while True:
            handle.write(b"x" * 512)
            handle.flush()


def on(reprun: Reprun, home: Path) -> Reprun:
    return Reprun(home, reprun.cwd)


def assert_reading_works(store: Reprun, run_id: str, out: Path) -> None:
    """runs list / show / logs and export, as the store is."""
    listed = store("runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert run_id in [r["run_id"] for r in listed.json()]
    shown = store("runs", "show", run_id[:8])
    assert shown.code == 0 and run_id in shown.stdout, shown.stderr
    logs = store("runs", "logs", run_id[:8])
    assert logs.code == 0, logs.stderr
    exported = store("export", run_id[:8], "-o", str(out))
    assert exported.code == 0, exported.stderr
    with tarfile.open(out) as archive:
        assert any(name.endswith("run.json") for name in archive.getnames())


def test_the_log_fills_the_disk(reprun: Reprun, make_project: MakeProject, small_fs: Mount,
                                tmp_path: Path) -> None:
    store = on(reprun, small_fs("2m") / "home")
    project = make_project(NOISY)
    result = store("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert len(result.stdout.splitlines()) == LINES  # every line reached the terminal
    assert result.stdout.splitlines()[-1].startswith(f"{LINES - 1} ")
    assert "Traceback" not in result.stderr
    assert "warning: log truncated: no space left on device" in result.stderr
    record = store.last_record()
    assert record["status"] == "FINISHED" and record["exit_code"] == 0
    assert record["backend"]["facts"]["log_truncated"].startswith("no space left on device")
    log = store.home / "runs" / record["run_id"] / "output.log"
    assert 0 < log.stat().st_size < LINES * 1000
    shown = store("runs", "show", record["run_id"][:8])
    assert "log:         truncated: no space left on device after" in shown.stdout
    logs = store("runs", "logs", record["run_id"][:8])
    assert logs.code == 0 and "warning: this log was truncated" in logs.stderr
    assert logs.stdout.encode() == log.read_bytes()
    assert_reading_works(store, record["run_id"], tmp_path / "export.tar.gz")


def test_a_full_disk_before_a_run(reprun: Reprun, make_project: MakeProject,
                                  small_fs: Mount, tmp_path: Path) -> None:
    store = on(reprun, small_fs("2m") / "home")
    project = make_project(QUIET)
    first = store("run", str(project), "--env-manager", "local")
    assert first.code == 0, first.stderr
    fill(store.home.parent)
    result = store("run", str(project), "--env-manager", "local")
    assert result.code == 1
    assert len(result.error_lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is full (No space left on device): the run was not started" in result.error_lines[0]
    runs = list((store.home / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "run.json").is_file()  # no run without its record
    assert_reading_works(store, runs[0].name, tmp_path / "export.tar.gz")


def test_a_read_only_store(reprun: Reprun, make_project: MakeProject, small_fs: Mount,
                           tmp_path: Path) -> None:
    mount = small_fs("8m")
    store = on(reprun, mount / "home")
    project = make_project(QUIET)
    first = store("run", str(project), "--env-manager", "local")
    assert first.code == 0, first.stderr
    run_id = store.last_record()["run_id"]
    remount_read_only(mount)
    with pytest.raises(OSError, match="Read-only"):
        (mount / "probe").write_text("")
    assert_reading_works(store, run_id, tmp_path / "export.tar.gz")
    result = store("run", str(project), "--env-manager", "local")
    assert result.code == 1
    assert len(result.error_lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is not writable (Read-only file system)" in result.error_lines[0]
    assert "set REPRUN_HOME to a writable directory" in result.error_lines[0]
    again = store("reproduce", run_id[:8])
    assert again.code == 1 and len(again.error_lines) == 1, again.stderr
    assert "is not writable (Read-only file system)" in again.error_lines[0]
    assert [p.name for p in (store.home / "runs").iterdir()] == [run_id]
