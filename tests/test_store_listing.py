"""Listing reads what it shows: the index, the RUNNING runs and the store's journal of runs the
index may be missing, never all of ``runs/``. A run whose index update failed, or whose reprun
was killed before its first index update, is still listed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import MakeProject, Reprun

REFUSE = ("CREATE TRIGGER refuse BEFORE INSERT ON runs "
          "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
METRIC = "entry_points:\n  main:\n    command: 'python3 metric.py'\n"
WRITES = {"metric.py": "import json, os\n"
          "with open(os.path.join(os.environ['REPRUN_OUTPUT_DIR'], 'metrics.json'), 'w') as f:\n"
          "    json.dump({'rmse': 0.5}, f)\n"}


def index_ids(home: Path) -> set[str]:
    db = sqlite3.connect(home / "index.sqlite")
    try:
        return {row[0] for row in db.execute("SELECT run_id FROM runs")}
    finally:
        db.close()


def sql(home: Path, statement: str) -> None:
    db = sqlite3.connect(home / "index.sqlite")
    try:
        with db:
            db.execute(statement)
    finally:
        db.close()


def test_a_run_whose_index_update_failed_is_listed(reprun: Reprun,
                                                   make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo hi'\n")
    assert reprun("run", str(project), "-q").code == 0
    first = reprun("runs", "list", "--json").json()[0]["run_id"]
    sql(reprun.home, REFUSE)  # the index takes no new row: as on a full disk
    ran = reprun("run", str(project), "-q")
    assert ran.code == 0, ran.stderr
    assert len(index_ids(reprun.home)) == 1
    listed = [r["run_id"] for r in reprun("runs", "list", "-n", "5", "--json").json()]
    assert len(listed) == 2 and listed[1] == first  # the new run, from its record, first
    sql(reprun.home, "DROP TRIGGER refuse")
    again = [r["run_id"] for r in reprun("runs", "list", "-n", "1", "--json").json()]
    assert again == listed[:1]
    assert index_ids(reprun.home) == set(listed)  # the listing put it in the index


def test_a_run_killed_before_its_first_index_update_is_listed(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    pid_file = tmp_path / "command.pid"
    project = make_project(
        "entry_points:\n  main:\n    command: \"python3 -c 'import os, time; "
        f"open(\\\"{pid_file}\\\", \\\"w\\\").write(str(os.getpid())); time.sleep(60)'\"\n")
    assert reprun("runs", "reindex").code == 0  # an empty index
    sql(reprun.home, REFUSE)
    before = index_ids(reprun.home)
    runner = reprun.popen("run", str(project), "-q", "--env-manager", "local")
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
            time.sleep(0.05)
        runner.kill()  # reprun dies; its record says RUNNING, the index has no row for it
        runner.communicate()
    finally:
        if pid_file.exists() and pid_file.read_text():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    sql(reprun.home, "DROP TRIGGER refuse")
    assert index_ids(reprun.home) == before
    listed = reprun("runs", "list", "-n", "1", "--json").json()
    assert listed[0]["run_id"] not in before
    assert listed[0]["status"] == "FAILED"  # its reprun is gone
    record = reprun.record(listed[0]["run_id"])
    assert "ended without finishing the run" in record["reason"]
    assert listed[0]["run_id"] in index_ids(reprun.home)


AUDIT = """
import os, sys
runs = os.path.join(os.environ["REPRUN_HOME"], "runs")
def hook(event, args):
    if event in ("os.listdir", "os.scandir", "open") and args and args[0] is not None:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(runs):
            sys.stderr.write(f"AUDIT {event} {os.fsdecode(path)}\\n")
sys.addaudithook(hook)
sys.argv = ["reprun", *sys.argv[1:]]
from runner.cli import main
main()
"""


def test_a_listing_reads_neither_runs_nor_records(reprun: Reprun,
                                                  make_project: MakeProject) -> None:
    project = make_project(METRIC, files=WRITES)
    for _ in range(3):
        assert reprun("run", str(project), "-q", "--env-manager", "local").code == 0
    for args in (["-n", "2"], ["--sort", "metrics.rmse", "-n", "2"],
                 ["--sort=-metrics.missing", "-n", "2"],
                 ["--where", "metrics.rmse < 1", "-n", "2", "--json"], ["--json"]):
        done = subprocess.run([sys.executable, "-c", AUDIT, "runs", "list", *args],
                              env=reprun.env(), cwd=reprun.cwd, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.strip().splitlines()) > 1
        assert "AUDIT" not in done.stderr, (args, done.stderr)
    # the check itself sees a listing of runs/ when there is one
    shown = subprocess.run([sys.executable, "-c", AUDIT, "runs", "reindex"], env=reprun.env(),
                           cwd=reprun.cwd, capture_output=True, text=True, check=False)
    assert f"AUDIT os.listdir {reprun.home / 'runs'}" in shown.stderr


def test_sorting_by_a_metric_lists_runs_without_it_last(reprun: Reprun,
                                                        make_project: MakeProject) -> None:
    with_metric = make_project(METRIC, files=WRITES, name="a")
    without = make_project("entry_points:\n  main:\n    command: 'true'\n", name="b")
    ids = []
    for project in (without, with_metric, without):
        assert reprun("run", str(project), "-q", "--env-manager", "local").code == 0
        ids.append(reprun("runs", "list", "-n", "1", "--json").json()[0]["run_id"])
    for sort in ("metrics.rmse", "-metrics.rmse"):
        for limit in ("1", "2", "3"):
            listed = reprun("runs", "list", "--sort", sort, "-n", limit, "--json").json()
            assert [r["run_id"] for r in listed] == [ids[1], ids[2], ids[0]][:int(limit)]
    filtered = reprun("runs", "list", "--sort", "metrics.rmse", "--where",
                      f"run_id != {ids[1]}", "-n", "3", "--json").json()
    assert [r["run_id"] for r in filtered] == [ids[2], ids[0]]
