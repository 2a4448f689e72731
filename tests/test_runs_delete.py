"""`reprun runs delete`: runs leave the store whole (record, files, index rows), a running run is
refused, nothing goes without a confirmation, and the runs that read a deleted run's outputs
keep their lineage."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import MakeProject, Reprun, Result
from test_lineage_reuse import chain  # noqa: F401  (a fixture: three runs, each reading the last)

PROJECT = """
    name: deletable
    entry_points:
      main:
        parameters: {x: {type: float, default: 1}, pause: {type: float, default: 0}}
        command: 'sleep {pause}; echo "score: {x}"; test {x} != 2'
        metrics: {stdout: true}
"""


def _no_stdin(reprun: Reprun, *args: str) -> Result:
    """The command with no terminal to ask on (stdin is /dev/null)."""
    done = subprocess.run(reprun.argv(*args), cwd=reprun.cwd, env=reprun.env(None),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def _runs(reprun: Reprun, make_project: MakeProject) -> list[dict[str, Any]]:
    project = make_project(PROJECT)
    for x in ("1", "2", "3"):
        reprun("run", str(project), "-P", f"x={x}", "--env-manager", "local", "-q")
    listed: list[dict[str, Any]] = reprun("runs", "list", "--json").json()
    return listed


def test_deleted_runs_leave_the_record_the_files_and_the_index(
    reprun: Reprun, make_project: MakeProject,
) -> None:
    runs = _runs(reprun, make_project)
    failed = [r["run_id"] for r in runs if r["status"] == "FAILED"]
    assert len(failed) == 1
    preview = _no_stdin(reprun, "runs", "delete", "--where", "status = FAILED", "--dry-run")
    assert preview.code == 0 and failed[0][:12] in preview.stdout
    assert "1 run(s) would be deleted" in preview.stderr
    assert (reprun.home / "runs" / failed[0]).is_dir()

    done = _no_stdin(reprun, "runs", "delete", "--where", "status = FAILED", "--yes")
    assert done.code == 0, done.stderr
    assert "deleted 1 run(s)" in done.stderr
    assert not (reprun.home / "runs" / failed[0]).exists()
    assert not (reprun.home / "trash").exists()
    left = reprun("runs", "list", "--json", "-c", "metrics.score").json()
    assert sorted(r["metrics.score"] for r in left) == [1.0, 3.0]
    assert reprun("runs", "list", "--json", "--where", "metrics.score = 2").json() == []
    shown = reprun("runs", "show", failed[0][:8])
    assert shown.code == 2 and f"no run matches '{failed[0][:8]}'" in shown.stderr
    assert reprun("runs", "reindex").code == 0  # the index is rebuilt without it
    assert len(reprun("runs", "list", "--json").json()) == 2

    by_id = _no_stdin(reprun, "runs", "delete", left[0]["run_id"][:8], left[0]["run_id"], "-y")
    assert by_id.code == 0 and "deleted 1 run(s)" in by_id.stderr  # named twice, deleted once
    assert [r["run_id"] for r in reprun("runs", "list", "--json").json()] == \
        [left[1]["run_id"]]


def test_nothing_is_deleted_without_a_confirmation_or_a_selection(
    reprun: Reprun, make_project: MakeProject,
) -> None:
    runs = _runs(reprun, make_project)
    asked = _no_stdin(reprun, "runs", "delete", runs[0]["run_id"])
    assert asked.code == 2
    assert asked.stderr.strip() == ("reprun: error: deleting 1 run(s) needs a confirmation; "
                                    "pass --yes (or --dry-run to see them only)")
    neither = _no_stdin(reprun, "runs", "delete", "-y")
    assert neither.code == 2
    assert "give the runs to delete (ids) or --where EXPR" in neither.stderr
    both = _no_stdin(reprun, "runs", "delete", runs[0]["run_id"], "--where", "x = 1", "-y")
    assert both.code == 2 and "not both" in both.stderr
    bad = _no_stdin(reprun, "runs", "delete", "--where", "metrics.score <", "-y")
    assert bad.code == 2 and bad.stderr.startswith("reprun: error: ")
    none = _no_stdin(reprun, "runs", "delete", "--where", "metrics.score > 10", "-y")
    assert none.code == 0 and "no run matches" in none.stderr
    assert len(reprun("runs", "list", "--json").json()) == 3


def test_a_running_run_is_refused(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(PROJECT)
    proc = reprun.popen("run", str(project), "-P", "pause=60", "--env-manager", "local", "-q")
    try:
        deadline = time.monotonic() + 60
        listed: list[dict[str, Any]] = []
        while not listed and time.monotonic() < deadline:
            listed = reprun("runs", "list", "--json", "--where", "status = RUNNING").json()
            time.sleep(0.2)
        assert listed, "the run never showed as RUNNING"
        run_id = listed[0]["run_id"]
        refused = _no_stdin(reprun, "runs", "delete", run_id[:8], "-y")
        assert refused.code == 2
        assert refused.stderr.strip() == (
            f"reprun: error: {run_id[:8]} is still running; stop with 'reprun cancel RUN' first "
            "(or leave them out of the selection)")
        assert (reprun.home / "runs" / run_id / "run.json").is_file()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_runs_that_read_a_deleted_run_keep_their_lineage(
    reprun: Reprun, chain: tuple[Path, list[dict[str, Any]]],  # noqa: F811
) -> None:
    _project, (prepare, train, report) = chain
    done = _no_stdin(reprun, "runs", "delete", train["run_id"], "-y")
    assert done.code == 0, done.stderr
    up = reprun("runs", "lineage", report["run_id"][:8])
    assert up.code == 0, up.stderr
    assert f"{train['run_id'][:12]}  (no longer in the store)" in up.stdout
    assert reprun.record(report["run_id"])["inputs"][0]["produced_by"][0]["run_id"] == \
        train["run_id"]
    down = reprun("runs", "lineage", prepare["run_id"][:8], "--down")
    assert down.code == 0 and train["run_id"][:12] not in down.stdout
