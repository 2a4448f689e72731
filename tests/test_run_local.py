"""Running a project locally: streaming, exit codes, signals, the record and its outputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest
from blake3 import blake3
from conftest import MakeProject, Reprun, git, init_repo, pid_alive, wait_for


def running_records(reprun: Reprun) -> list[Path]:
    runs = reprun.home / "runs"
    return sorted(runs.glob("*/run.json")) if runs.is_dir() else []




def test_record_is_complete(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        name: demo
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
              msg: string
            command: 'printf "%s\\n" {msg} > "$REPRUN_OUTPUT_DIR/msg.txt"; echo run=$REPRUN_RUN_ID'
    """)
    result = reprun("run", str(project), "-P", "msg=a b 'c'", "-P", "extra=1",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    run_id = record["run_id"]
    assert f"run={run_id}" in result.stdout
    assert run_id in result.stderr  # the run id is printed for the user
    assert record["status"] == "FINISHED" and record["exit_code"] == 0
    assert record["entry_point"] == "main"
    assert record["parameters"] == {"alpha": "0.5", "msg": "a b 'c'", "extra": "1"}
    assert record["command"].startswith("printf \"%s\\n\" 'a b '\"'\"'c'\"'\"''")
    assert record["command"].endswith("--extra 1")
    assert record["project"] == {"uri": str(project), "path": str(project), "name": "demo",
                                 "spec_file": str(project / "MLproject")}
    assert record["source"]["git_commit"] is None and record["source"]["git_dirty"] is None
    env = record["environment"]
    assert env["kind"] == "none" and env["manager"] == "local"
    assert re.fullmatch(r"\d+\.\d+\.\d+", env["python_version"])
    assert env["packages"] and {"name", "version"} <= set(env["packages"][0])
    assert set(record["host"]) >= {"os", "architecture", "cpu_count", "reprun_version"}
    assert record["duration_s"] >= 0 and record["ended_at"] >= record["started_at"]
    content = b"a b 'c'\n"
    assert record["outputs"] == [{"path": "msg.txt", "size": len(content),
                                  "digest": "blake3:" + blake3(content).hexdigest(),
                                  "sha256": None}]
    assert Path(record["output_dir"], "msg.txt").read_bytes() == content
    logs = reprun("runs", "logs", run_id[:6])
    assert logs.code == 0 and f"run={run_id}" in logs.stdout


def test_exit_code_is_passed_through(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo oops >&2; exit 3'\n")
    result = reprun("run", str(project))
    assert result.code == 3
    assert "oops" in result.stderr
    record = reprun.last_record()
    assert record["status"] == "FAILED" and record["exit_code"] == 3
    assert "exited with code 3" in record["reason"]


def test_output_is_streamed_and_captured_while_running(reprun: Reprun,
                                                       make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo first; sleep 60'\n")
    proc = reprun.popen("run", str(project), "--grace-period", "5")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"  # arrives while the command still runs
        log = next((reprun.home / "runs").glob("*/output.log"))
        assert log.read_text() == "first\n"
        assert json.loads(log.with_name("run.json").read_text())["status"] == "RUNNING"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 130


def test_ctrl_c_stops_the_whole_group_and_records_killed(reprun: Reprun, tmp_path: Path,
                                                         make_project: MakeProject) -> None:
    pids = tmp_path / "pids"
    project = make_project(f"""
        entry_points:
          main:
            command: 'sleep 300 & echo $! >> {pids}; (sleep 300; true) & echo $! >> {pids}; wait'
    """)
    proc = reprun.popen("run", str(project))
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    children = [int(p) for p in pids.read_text().split()]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    record = reprun.last_record()
    assert not [p for p in children if pid_alive(p)], record
    assert record["status"] == "KILLED"
    assert record["backend"]["facts"]["signal"] == "SIGINT"


def test_sigterm_then_kill_after_the_grace_period(reprun: Reprun, tmp_path: Path,
                                                  make_project: MakeProject) -> None:
    pid_file = tmp_path / "pid"
    project = make_project(f"""
        entry_points:
          main:
            command: "trap '' INT TERM; sleep 300 & echo $! > {pid_file}; wait"
    """)
    proc = reprun.popen("run", str(project), "--grace-period", "1")
    wait_for(pid_file.exists)
    wait_for(lambda: pid_file.read_text().strip() != "")
    stubborn = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    record = reprun.last_record()
    assert not pid_alive(stubborn), record
    assert record["status"] == "KILLED" and record["backend"]["facts"]["signal"] == "SIGTERM"


def test_a_dead_reprun_process_is_shown_failed(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo started; sleep 300'\n")
    proc = reprun.popen("run", str(project))
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    record_path = running_records(reprun)[0]
    proc.kill()
    proc.wait(10)
    listed = reprun("runs", "list", "--json").json()
    assert listed[0]["status"] == "FAILED"
    record = json.loads(record_path.read_text())
    assert record["status"] == "FAILED"
    assert "ended without finishing the run" in record["reason"]
    # The orphaned command keeps its own process group; clean it up for the next tests.
    for pid in _sleepers_of(record_path.parent.name):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def _sleepers_of(run_id: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"REPRUN_RUN_ID={run_id}".encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_secrets_in_the_environment_are_not_recorded(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'test -n \"$API_TOKEN\"'\n")
    init_repo(project)
    git(project, "remote", "add", "origin", "https://alice:s3cr3t-tok@git.example.invalid/x.git")
    result = reprun("run", str(project), env={"API_TOKEN": "hunter2-value"})
    assert result.code == 0, result.stderr
    record_dir = next((reprun.home / "runs").iterdir())
    stored = "".join(p.read_text(errors="replace") for p in record_dir.iterdir() if p.is_file())
    assert "hunter2-value" not in stored and "s3cr3t-tok" not in stored
    record = reprun.last_record()
    assert record["source"]["git_remote"] == "https://git.example.invalid/x.git"


def test_git_facts_and_the_uncommitted_patch(reprun: Reprun, make_project: MakeProject,
                                             tmp_path: Path) -> None:
    project = make_project(
        "entry_points:\n  main:\n    command: 'cat data.txt'\n",
        files={"data.txt": "one\n", "staged.txt": "s\n", ".gitignore": "ignored.bin\n"},
    )
    commit = init_repo(project)
    (project / "data.txt").write_text("two\n")  # unstaged change
    (project / "staged.txt").write_text("s2\n")
    git(project, "add", "staged.txt")  # staged change
    (project / "new.txt").write_text("untracked\n")  # untracked, not ignored
    (project / "ignored.bin").write_bytes(b"\0" * 10)  # ignored: not in the patch
    index_before = (project / ".git" / "index").read_bytes()
    result = reprun("run", str(project))
    assert result.code == 0 and result.stdout == "two\n"
    record = reprun.last_record()
    source = record["source"]
    assert source["git_commit"] == commit and source["git_branch"] == "main"
    assert source["git_dirty"] is True and source["git_remote"] is None
    patch = reprun.home / "runs" / record["run_id"] / source["patch_file"]
    assert hashlib.sha256(patch.read_bytes()).hexdigest() == source["patch_sha256"]
    assert b"ignored.bin" not in patch.read_bytes()
    assert (project / ".git" / "index").read_bytes() == index_before  # user's index untouched
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    git(clone, "checkout", "-q", commit)
    git(clone, "apply", str(patch))
    for name in ("data.txt", "staged.txt", "new.txt"):
        assert (clone / name).read_text() == (project / name).read_text()


def test_clean_repository_is_not_dirty(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n")
    init_repo(project)
    assert reprun("run", str(project)).code == 0
    source = reprun.last_record()["source"]
    assert source["git_dirty"] is False and source["patch_file"] is None


def test_dry_run_runs_nothing(reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    project = make_project(f"entry_points:\n  main:\n    command: 'touch {marker}'\n")
    result = reprun("run", str(project), "--dry-run", "--json")
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["command"] == f"touch {marker}" and plan["environment"]["manager"] == "uv"
    assert not marker.exists()
    assert reprun("runs", "list", "--json").json() == []
    human = reprun("run", str(project), "--dry-run")
    assert f"command:     touch {marker}" in human.stdout


@pytest.mark.parametrize("script", ["train.py", "run.sh"])
def test_project_without_mlproject(reprun: Reprun, make_project: MakeProject,
                                   script: str) -> None:
    body = "import sys; print(sys.argv[1:])" if script.endswith(".py") else 'echo "$@"'
    project = make_project(files={script: body + "\n"})
    result = reprun("run", str(project), "-e", script, "-P", "lr=0.1")
    assert result.code == 0, result.stderr
    assert "--lr" in result.stdout and "0.1" in result.stdout


def test_cancel_stops_a_local_run_from_another_shell(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo started; sleep 300'\n")
    proc = reprun.popen("run", str(project), "--env-manager", "local")
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    run_id = running_records(reprun)[0].parent.name
    cancelled = reprun("cancel", run_id[:10])
    assert cancelled.code == 0, cancelled.stderr
    assert "asked reprun" in cancelled.stderr
    assert proc.wait(30) == 143
    record = reprun.record(run_id)
    assert record["status"] == "KILLED" and record["backend"]["facts"]["signal"] == "SIGTERM"
    again = reprun("cancel", run_id)
    assert again.code == 0 and "has already ended: KILLED" in again.stderr
