"""Lineage (an input that an earlier run wrote) and `reprun run --reuse` (skip what has not
changed), with real runs, real git repositories and the real index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, git, init_repo
from test_reproduce import fake_python, set_packages

from runner.record.index import INDEX_VERSION

PIPELINE = """
    name: pipe
    entry_points:
      prepare:
        parameters: {raw: path}
        command: 'tr a-z A-Z < {raw} > "$REPRUN_OUTPUT_DIR/clean.csv"'
      train:
        parameters: {table: path}
        command: 'wc -l < {table} > "$REPRUN_OUTPUT_DIR/model.txt"'
      report:
        parameters: {model: path}
        command: 'cat {model} {model} > "$REPRUN_OUTPUT_DIR/report.txt"'
"""


def last(reprun: Reprun, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = reprun("run", *args, "--env-manager", "local", "-q", env=env)
    assert result.code == 0, result.stderr
    return reprun.last_record()


def out(reprun: Reprun, record: dict[str, Any], name: str) -> str:
    return str(reprun.home / "runs" / record["run_id"] / "outputs" / name)


@pytest.fixture
def chain(reprun: Reprun, make_project: MakeProject,
          tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    project = make_project(PIPELINE)
    init_repo(project)
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\nc,d\n")
    prepare = last(reprun, str(project), "-e", "prepare", "-P", f"raw={raw}")
    moved = tmp_path / "elsewhere.csv"  # the same content under another name is still found
    moved.write_bytes(Path(out(reprun, prepare, "clean.csv")).read_bytes())
    train = last(reprun, str(project), "-e", "train", "-P", f"table={moved}")
    report = last(reprun, str(project), "-e", "report", "-P",
                  f"model={out(reprun, train, 'model.txt')}")
    return project, [prepare, train, report]


def test_an_input_written_by_an_earlier_run_names_it(reprun: Reprun,
                                                     chain: tuple[Path, list[Any]]) -> None:
    _project, (prepare, train, report) = chain
    assert prepare["inputs"][0]["produced_by"] == []
    assert train["inputs"][0]["produced_by"] == [
        {"run_id": prepare["run_id"], "path": "clean.csv", "file": None}]
    assert report["inputs"][0]["produced_by"] == [
        {"run_id": train["run_id"], "path": "model.txt", "file": None}]
    shown = reprun("runs", "show", train["run_id"]).stdout
    assert f"made by run {prepare['run_id'][:8]} (clean.csv)" in shown


def test_runs_lineage_up_and_down(reprun: Reprun, chain: tuple[Path, list[Any]]) -> None:
    _project, (prepare, train, report) = chain
    ids = [r["run_id"][:12] for r in (prepare, train, report)]
    up = reprun("runs", "lineage", report["run_id"][:8])
    assert up.code == 0, up.stderr
    assert up.stdout.splitlines() == [
        f"{ids[2]}  pipe / report (FINISHED)",
        f"  {ids[1]}  pipe / train (FINISHED)  [model <- model.txt]",
        f"    {ids[0]}  pipe / prepare (FINISHED)  [table <- clean.csv]",
    ]
    down = reprun("runs", "lineage", prepare["run_id"][:8], "--down")
    assert down.stdout.splitlines() == [
        f"{ids[0]}  pipe / prepare (FINISHED)",
        f"  {ids[1]}  pipe / train (FINISHED)  [read clean.csv as table]",
        f"    {ids[2]}  pipe / report (FINISHED)  [read model.txt as model]",
    ]
    tree = reprun("runs", "lineage", report["run_id"], "--json").json()
    assert tree["children"][0]["children"][0]["run_id"] == prepare["run_id"]


def test_a_directory_input_links_file_by_file(reprun: Reprun, make_project: MakeProject,
                                              tmp_path: Path) -> None:
    project = make_project("""
        entry_points:
          make:
            command: 'echo one > "$REPRUN_OUTPUT_DIR/one.txt"'
          use:
            parameters: {dir: path}
            command: 'ls {dir}'
    """)
    init_repo(project)
    maker = last(reprun, str(project), "-e", "make")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "copied.txt").write_text("one\n")
    (folder / "own.txt").write_text("mine\n")
    user = last(reprun, str(project), "-e", "use", "-P", f"dir={folder}")
    assert user["inputs"][0]["produced_by"] == [
        {"run_id": maker["run_id"], "path": "one.txt", "file": "copied.txt"}]


def test_an_old_index_is_upgraded_on_first_use(reprun: Reprun,
                                               chain: tuple[Path, list[Any]]) -> None:
    _project, (prepare, train, _report) = chain
    index = reprun.home / "index.sqlite"
    with sqlite3.connect(index) as db:  # the index as reprun 0.1 left it
        for table in ("outputs", "links", "reuse"):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version=0")
    down = reprun("runs", "lineage", prepare["run_id"], "--down")
    assert down.code == 0, down.stderr
    assert train["run_id"][:12] in down.stdout
    with sqlite3.connect(index) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
        assert db.execute("SELECT count(*) FROM outputs").fetchone()[0] == 3
    assert reprun("runs", "reindex").code == 0
    assert reprun("runs", "lineage", prepare["run_id"], "--down").stdout == down.stdout


def test_old_records_with_sha256_outputs_are_still_read(reprun: Reprun,
                                                        chain: tuple[Path, list[Any]]) -> None:
    _project, (prepare, train, _report) = chain
    path = reprun.home / "runs" / prepare["run_id"] / "run.json"
    old = json.loads(path.read_text())
    old["outputs"] = [{"path": "clean.csv", "size": 8, "sha256": "ab" * 32}]
    for key in ("inputs", "reuse_key", "reused_from"):
        old.pop(key)
    old["reproduction"] = None
    path.write_text(json.dumps(old))
    assert reprun("runs", "reindex").code == 0
    shown = reprun("runs", "show", prepare["run_id"], "--json").json()
    assert shown["outputs"] == [{"path": "clean.csv", "size": 8, "digest": None,
                                 "sha256": "ab" * 32}]
    diff = reprun("diff", prepare["run_id"], train["run_id"], "--json").json()
    assert diff["outputs"]["only_a"] == ["clean.csv"]


# --- reuse --------------------------------------------------------------------------------------

REUSABLE = """
    name: reusable
    data: [data/table.csv]
    entry_points:
      main:
        parameters: {scale: {type: int, default: 2}}
        command: 'python -c "import os,sys; print(sys.argv[1])" {scale}
          > "$REPRUN_OUTPUT_DIR/scale.txt"; cat data/table.csv >> "$REPRUN_OUTPUT_DIR/scale.txt";
          mkdir -p "$REPRUN_OUTPUT_DIR/sub"; echo x > "$REPRUN_OUTPUT_DIR/sub/x.txt"'
"""


@pytest.fixture
def reusable(make_project: MakeProject) -> Path:
    project = make_project(REUSABLE, files={"data/table.csv": "1,2\n", ".gitignore": "data/\n"})
    init_repo(project)
    return project


def reused(reprun: Reprun, project: Path, *args: str,
           env: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    result = reprun("run", str(project), "--reuse", "--env-manager", "local", *args, env=env)
    assert result.code == 0, result.stderr
    return result.code, result.stderr, reprun.last_record()


def test_an_unchanged_run_reuses_the_outputs_of_the_last(reprun: Reprun, reusable: Path) -> None:
    _code, err, first = reused(reprun, reusable)
    assert "reusing" not in err and first["reused_from"] is None
    assert first["reuse_key"].startswith("sha256:")
    _code, err, second = reused(reprun, reusable)
    assert f"reprun: unchanged since run {first['run_id'][:8]}: reusing its outputs" in err
    assert second["reused_from"] == first["run_id"]
    assert second["status"] == "FINISHED" and second["exit_code"] == 0
    assert second["outputs"] == first["outputs"] and len(second["outputs"]) == 2
    copied = Path(second["output_dir"])
    assert (copied / "scale.txt").read_text() == "2\n1,2\n"
    assert (copied / "sub" / "x.txt").read_text() == "x\n"
    assert second["environment"]["lock_sha256"] == first["environment"]["lock_sha256"]
    assert second["inputs"] == first["inputs"] and second["reuse_key"] == first["reuse_key"]
    log = reprun("runs", "logs", second["run_id"]).stdout
    assert log == f"reprun: unchanged since run {first['run_id']}: reused its outputs\n"


def test_without_reuse_the_run_runs(reprun: Reprun, reusable: Path) -> None:
    first = last(reprun, str(reusable))
    second = last(reprun, str(reusable))
    assert second["reused_from"] is None and second["reuse_key"] == first["reuse_key"]


@pytest.mark.parametrize("change", ["code", "uncommitted", "data", "parameter"])
def test_a_change_defeats_reuse(reprun: Reprun, reusable: Path, change: str) -> None:
    _code, _err, first = reused(reprun, reusable)
    args: tuple[str, ...] = ()
    if change == "code":
        (reusable / "notes.md").write_text("new\n")
        git(reusable, "add", "notes.md")
        git(reusable, "commit", "-qm", "notes")
    elif change == "uncommitted":
        (reusable / "MLproject").write_text((reusable / "MLproject").read_text() + "\n")
    elif change == "data":
        (reusable / "data" / "table.csv").write_text("3,4\n")
    else:
        args = ("-P", "scale=3")
    _code, err, second = reused(reprun, reusable, *args)
    assert "reusing" not in err
    assert second["reused_from"] is None and second["reuse_key"] != first["reuse_key"]
    # and unchanged again, the second run is reused
    _code, err, third = reused(reprun, reusable, *args)
    assert third["reused_from"] == second["run_id"]


def test_a_changed_lock_defeats_reuse(reprun: Reprun, reusable: Path, tmp_path: Path) -> None:
    env = fake_python(tmp_path, {"fakepkg": "1.0"})
    _code, _err, first = reused(reprun, reusable, env=env)
    set_packages(tmp_path / "venv", {"fakepkg": "2.0"})
    _code, err, second = reused(reprun, reusable, env=env)
    assert "reusing" not in err and second["reused_from"] is None
    assert second["environment"]["lock_sha256"] != first["environment"]["lock_sha256"]


def test_outputs_changed_since_are_not_reused(reprun: Reprun, reusable: Path) -> None:
    _code, _err, first = reused(reprun, reusable)
    (Path(first["output_dir"]) / "scale.txt").write_text("tampered\n")
    _code, err, second = reused(reprun, reusable)
    assert (f"reprun: run {first['run_id'][:8]} ran the same, but its outputs have changed "
            "since; not reused") in err
    assert second["reused_from"] is None
    assert (Path(second["output_dir"]) / "scale.txt").read_text() == "2\n1,2\n"


def test_a_failed_run_is_not_reused(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'exit 3'\n")
    init_repo(project)
    assert reprun("run", str(project), "--reuse", "--env-manager", "local", "-q").code == 3
    again = reprun("run", str(project), "--reuse", "--env-manager", "local")
    assert again.code == 3 and "reusing" not in again.stderr


def test_a_reused_run_carries_the_metrics_of_the_run_it_reused(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        name: scored
        entry_points:
          main:
            command: >-
              echo '{{"name": "loss", "value": 0.25, "step": 3}}' >> "$REPRUN_METRICS"
    """)
    init_repo(project)
    _code, _err, first = reused(reprun, project)
    assert first["metrics"]["loss"]["last"] == 0.25
    _code, _err, second = reused(reprun, project)
    assert second["reused_from"] == first["run_id"]
    assert second["metrics"] == first["metrics"]
    listed = reprun("runs", "list", "--where", "metrics.loss = 0.25", "--json").json()
    assert {run["run_id"] for run in listed} == {first["run_id"], second["run_id"]}
