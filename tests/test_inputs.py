"""Input data: fingerprints of path parameters, data: entries and DVC-tracked files, the stat cache,
and a reproduction that stops when an input changed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from conftest import MakeProject, Reprun, git, init_repo

COPY_ALL = """
    name: inputs
    data: [data/wine.csv, data/images/]
    entry_points:
      main:
        command: 'cat data/wine.csv > "$REPRUN_OUTPUT_DIR/table.csv"'
      with_param:
        parameters: {extra: path}
        command: 'cat data/wine.csv > "$REPRUN_OUTPUT_DIR/table.csv"'
"""


def b3(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def manifest_digest(files: dict[str, bytes]) -> str:
    rows = [{"digest": b3(files[p]), "path": p, "size": len(files[p])} for p in sorted(files)]
    return b3(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode())


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in record["inputs"]}


def run_ok(reprun: Reprun, *args: str) -> dict[str, Any]:
    result = reprun("run", *args, "--env-manager", "local", "-q")
    assert result.code == 0, result.stderr
    return reprun.last_record()


@pytest.fixture
def wine(make_project: MakeProject) -> Path:
    return make_project(COPY_ALL, files={
        "data/wine.csv": "a,b\n1,2\n", "data/images/one.txt": "1\n",
        "data/images/sub/two.txt": "22\n",
    })


def test_data_files_and_directories_are_fingerprinted_with_a_manifest(reprun: Reprun,
                                                                       wine: Path) -> None:
    record = run_ok(reprun, str(wine), "-e", "with_param",
                    "-P", "extra=" + str(wine / "data" / "images"))
    inputs = by_name(record)
    assert set(inputs) == {"extra", "data/wine.csv", "data/images/"}
    table = inputs["data/wine.csv"]
    assert table == {"name": "data/wine.csv", "path": "data/wine.csv", "kind": "data",
                     "type": "file", "digest": b3(b"a,b\n1,2\n"), "size": 8, "files": 1,
                     "manifest": None, "dvc_md5": None, "dvc_file": None, "produced_by": []}
    images = inputs["data/images/"]
    files = {"one.txt": b"1\n", "sub/two.txt": b"22\n"}
    assert images["type"] == "directory" and images["files"] == 2 and images["size"] == 5
    assert images["digest"] == manifest_digest(files)
    saved = json.loads((reprun.home / "runs" / record["run_id"] / images["manifest"]).read_text())
    assert saved["digest"] == images["digest"]
    assert saved["files"] == [{"path": p, "size": len(d), "digest": b3(d)}
                              for p, d in sorted(files.items())]
    extra = inputs["extra"]  # a path parameter naming the same directory: same digest
    assert extra["kind"] == "param" and extra["path"] == str(wine / "data" / "images")
    assert extra["digest"] == images["digest"]
    # outputs carry the same digest, so the output can be matched with the input it copies
    assert record["outputs"] == [{"path": "table.csv", "size": 8, "digest": table["digest"],
                                  "sha256": None}]
    shown = reprun("runs", "show", record["run_id"][:8]).stdout
    assert f"input:       data/images/ (data, 2 files, 5 bytes, {images['digest'][:23]})" in shown


def test_the_stat_cache_hashes_unchanged_data_once(reprun: Reprun, wine: Path) -> None:
    old = (wine / "data" / "wine.csv").stat().st_mtime - 10  # not "racily clean"
    for path in (wine / "data").rglob("*"):
        os.utime(path, (old, old))
    first = by_name(run_ok(reprun, str(wine)))
    cache = reprun.home / "cache" / "digests.sqlite"
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT digest FROM digests").fetchall()
    # three data files and one output, a copy of wine.csv (outputs are cached at once: nothing
    # writes them any more)
    wine_digest = first["data/wine.csv"]["digest"]
    assert sorted(r[0] for r in rows) == sorted([wine_digest, wine_digest, b3(b"1\n"),
                                                 b3(b"22\n")])
    with sqlite3.connect(cache) as db:  # a wrong cached digest is believed: proof it was used
        db.execute("UPDATE digests SET digest='blake3:' || printf('%064d', 0) "
                   "WHERE digest=?", (b3(b"1\n"),))
    second = by_name(run_ok(reprun, str(wine)))
    assert second["data/wine.csv"]["digest"] == first["data/wine.csv"]["digest"]
    assert second["data/images/"]["digest"] != first["data/images/"]["digest"]

    (wine / "data" / "images" / "one.txt").write_text("changed\n")  # new size and mtime
    third = by_name(run_ok(reprun, str(wine)))
    assert third["data/images/"]["digest"] == manifest_digest({"one.txt": b"changed\n",
                                                               "sub/two.txt": b"22\n"})


def test_a_file_changed_just_before_hashing_is_not_cached(tmp_path: Path) -> None:
    from runner.tracking.fingerprint import fingerprint_paths
    from runner.tracking.statcache import opened

    fresh, settled = tmp_path / "fresh.txt", tmp_path / "settled.txt"
    fresh.write_text("now\n")
    settled.write_text("old\n")
    os.utime(settled, (1_000_000, 1_000_000))
    with opened(tmp_path / "c.sqlite") as cache:
        fingerprint_paths([fresh, settled], cache)
    with opened(tmp_path / "c.sqlite") as cache:
        prints = fingerprint_paths([fresh, settled], cache)
        assert (cache.hits, cache.misses) == (1, 1)
    assert [p.digest for p in prints] == [b3(b"now\n"), b3(b"old\n")]


def test_concurrent_runs_share_the_stat_cache(reprun: Reprun, wine: Path) -> None:
    procs = [reprun.popen("run", str(wine), "--env-manager", "local", "-q") for _ in range(3)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    digests = {json.dumps(r["inputs"]) for r in
               (reprun.record(s["run_id"]) for s in reprun("runs", "list", "--json").json())}
    assert len(digests) == 1


@pytest.mark.parametrize(("entry", "message"), [
    ("../outside.csv", "'../outside.csv' leads out of the project; data must be inside the "
                       "project directory"),
    ("data/../../x", "'data/../../x' leads out of the project; data must be inside the project "
                     "directory"),
    ("/etc/passwd", "'/etc/passwd' is absolute; give a path relative to the project "
                    "(data/wine.csv)"),
])
def test_data_outside_the_project_is_refused(reprun: Reprun, make_project: MakeProject,
                                             entry: str, message: str) -> None:
    project = make_project(f"data: ['{entry}']\nentry_points:\n  main:\n    command: 'true'\n")
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 2
    assert result.error_lines == [f"reprun: error: {project / 'MLproject'}:1: data: {message}"]


def test_a_symlink_out_of_the_project_is_refused(reprun: Reprun, make_project: MakeProject,
                                                 tmp_path: Path) -> None:
    project = make_project("data: [data]\nentry_points:\n  main:\n    command: 'true'\n")
    (tmp_path / "elsewhere").mkdir()
    (project / "data").symlink_to(tmp_path / "elsewhere")
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 2
    assert result.error_lines == [
        f"reprun: error: {project / 'MLproject'}: data: 'data' leads out of the project (to "
        f"{tmp_path / 'elsewhere'}); keep data inside the project directory"]


def test_missing_data_is_an_error_before_anything_runs(reprun: Reprun,
                                                        make_project: MakeProject) -> None:
    project = make_project("data: [data/gone.csv]\nentry_points:\n  main:\n    command: 'true'\n")
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 2
    assert result.error_lines == [
        f"reprun: error: {project / 'MLproject'}: data: 'data/gone.csv' does not exist in the "
        "project; create it, or remove it from data:"]
    assert not (reprun.home / "runs").exists() or not list((reprun.home / "runs").iterdir())


def test_a_missing_path_parameter_is_an_error(reprun: Reprun, make_project: MakeProject,
                                              tmp_path: Path) -> None:
    project = make_project("entry_points:\n  main:\n    parameters: {p: path}\n"
                           "    command: 'true'\n")
    result = reprun("run", str(project), "-P", "p=nowhere.csv", "--env-manager", "local")
    assert result.code == 2
    assert result.error_lines == [
        f"reprun: error: parameter 'p': no such file or directory: 'nowhere.csv' (looked at "
        f"{reprun.cwd / 'nowhere.csv'}); pass an existing path (relative to where you run reprun)"]


DVC_FILE = """\
outs:
- md5: 0123456789abcdef0123456789abcdef
  size: 8
  hash: md5
  path: wine.csv
"""
DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py
    deps:
    - path: data/wine.csv
      md5: 0123456789abcdef0123456789abcdef
    outs:
    - path: features
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
      nfiles: 1
"""


def dvc_project(make_project: MakeProject, lock: str = DVC_LOCK) -> Path:
    return make_project("entry_points:\n  main:\n    command: 'true'\n", files={
        ".dvc/config": "", "data/wine.csv": "a,b\n1,2\n", "data/wine.csv.dvc": DVC_FILE,
        "features/f.txt": "f\n", "dvc.lock": lock,
    })


def test_dvc_tracked_data_records_dvc_md5_and_our_digest(reprun: Reprun,
                                                          make_project: MakeProject) -> None:
    project = dvc_project(make_project)
    inputs = by_name(run_ok(reprun, str(project)))
    assert set(inputs) == {"data/wine.csv", "features"}
    wine = inputs["data/wine.csv"]
    assert (wine["kind"], wine["type"], wine["digest"]) == ("dvc", "file", b3(b"a,b\n1,2\n"))
    assert (wine["dvc_md5"], wine["dvc_file"]) == ("0123456789abcdef0123456789abcdef",
                                                   "data/wine.csv.dvc")
    features = inputs["features"]
    assert features["type"] == "directory" and features["dvc_file"] == "dvc.lock"
    assert features["dvc_md5"] == "fedcba9876543210fedcba9876543210.dir"
    assert features["digest"] == manifest_digest({"f.txt": b"f\n"})


def test_dvc_data_that_was_not_pulled_is_recorded_as_missing(reprun: Reprun,
                                                             make_project: MakeProject) -> None:
    project = dvc_project(make_project)
    (project / "data" / "wine.csv").unlink()
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert ("reprun: warning: 'data/wine.csv' is tracked by DVC (data/wine.csv.dvc) but missing; "
            "run 'dvc pull' to fetch it") in result.stderr
    wine = by_name(reprun.last_record())["data/wine.csv"]
    assert (wine["type"], wine["digest"], wine["dvc_md5"]) == (
        "missing", None, "0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("data/wine.csv.dvc", "outs: [unclosed\n", "cannot be read as YAML"),
    ("data/wine.csv.dvc", "outs: {path: x}\n", "outs: not a valid DVC file: must be a list of "
                                               "outputs (path, md5)"),
    ("data/wine.csv.dvc", "outs:\n- md5: 12\n", "outs: not a valid DVC file: an entry has no "
                                                "'path' ({'md5': 12})"),
    ("data/wine.csv.dvc", "outs:\n- path: ../../up.csv\n",
     "outs: not a valid DVC file: 'data/../../up.csv' leads out of the project"),
    ("dvc.lock", "stages: [a, b]\n", "stages: not a valid DVC file: must be a mapping of "
                                     "stage names"),
])
def test_a_broken_dvc_file_is_one_line_naming_it(reprun: Reprun, make_project: MakeProject,
                                                 name: str, text: str, message: str) -> None:
    project = dvc_project(make_project)
    (project / name).write_text(text)
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 2
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert line.startswith(f"reprun: error: {project / name}: "), line
    assert message in line
    assert line.endswith("; fix it with DVC (dvc add / dvc repro) or remove it")


def test_reproduce_names_the_changed_files_of_a_directory(reprun: Reprun,
                                                         make_project: MakeProject,
                                                         tmp_path: Path) -> None:
    images = tmp_path / "images"
    for name in ("a.txt", "b.txt", "c.txt"):
        (images / name).parent.mkdir(exist_ok=True)
        (images / name).write_text(name)
    project = make_project("entry_points:\n  main:\n    parameters: {images: path}\n"
                           "    command: 'ls {images} > \"$REPRUN_OUTPUT_DIR/list.txt\"'\n")
    init_repo(project)
    original = run_ok(reprun, str(project), "-P", f"images={images}")
    (images / "a.txt").write_text("other")
    (images / "c.txt").unlink()
    (images / "d.txt").write_text("new")

    result = reprun("reproduce", original["run_id"])
    assert result.code == 1
    assert result.error_lines == [
        f"reprun: error: input 'images' of run {original['run_id'][:12]} changed: "
        f"{images}/a.txt (changed), {images}/d.txt (added), {images}/c.txt (removed); "
        "restore the data, or pass --allow-drift to run anyway and record the drift"]
    assert len(reprun("runs", "list", "--json").json()) == 1  # no run was made

    (images / "a.txt").write_text("a.txt")
    (images / "c.txt").write_text("c.txt")
    (images / "d.txt").unlink()
    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 0, result.stderr
    assert reprun.last_record()["reproduction"]["input_drift"] == []


def test_reproduce_from_an_export_checks_inputs_with_its_manifests(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.txt").write_text("a")
    project = make_project("entry_points:\n  main:\n    parameters: {images: path}\n"
                           "    command: 'true'\n")
    init_repo(project)
    original = run_ok(reprun, str(project), "-P", f"images={images}")
    exported = tmp_path / "run.tar.gz"
    assert reprun("export", original["run_id"], "-o", str(exported)).code == 0
    (images / "a.txt").write_text("b")
    result = reprun("reproduce", str(exported))
    assert result.code == 1
    assert f"changed: {images}/a.txt (changed);" in result.error_lines[0]


def test_data_in_git_is_the_committed_content_on_reproduce(reprun: Reprun, wine: Path) -> None:
    """A reproduction checks out the recorded commit: committed data comes with it."""
    init_repo(wine)
    original = run_ok(reprun, str(wine))
    (wine / "data" / "wine.csv").write_text("edited,after\n")
    git(wine, "commit", "-qam", "new data")
    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 0, result.stderr
    assert reprun.last_record()["inputs"] == original["inputs"]


def test_a_run_without_inputs_imports_nothing_of_input_tracking(reprun: Reprun,
                                                                 make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    parameters: {n: int}\n"
                           "    command: 'echo {n}'\n")
    assert reprun("run", str(project), "-P", "n=1", "--env-manager", "local", "-q").code == 0
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "run", str(project), "-P", "n=2",
         "--env-manager", "local", "-q"],
        env=reprun.env(), cwd=reprun.cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "runner.execute" in imported
    tracking = {m for m in imported if m.startswith("runner.tracking.")
                and not m.startswith("runner.tracking.mlflow")}  # the run's own MLflow endpoint
    # The reuse key (hashlib and json only) and the metrics reader (a run may write metrics.json
    # without declaring it: metrics and metricfiles); nothing that fingerprints inputs.
    assert tracking == {"runner.tracking.reuse", "runner.tracking.metrics",
                        "runner.tracking.metricfiles"}
    assert not {m.split(".")[0] for m in imported} & {"blake3", "yaml", "pydantic", "rich"}


def test_the_manifest_bytes_are_canonical_json() -> None:
    from runner.tracking.digest import ManifestEntry, manifest_json

    entries = [ManifestEntry('b/é "q"\\.txt', 3, b3(b"x")), ManifestEntry("a", 1, b3(b"y"))]
    rows = [{"digest": e.digest, "path": e.path, "size": e.size} for e in sorted(entries)]
    assert manifest_json(entries) == json.dumps(rows, sort_keys=True, separators=(",", ":"),
                                                ensure_ascii=False).encode()


def test_the_progress_bar_shows_only_live_and_only_after_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.tracking import fingerprint

    quiet = fingerprint._LazyProgress(100, live=False)
    monkeypatch.setattr(fingerprint, "PROGRESS_AFTER_S", 0.0)
    quiet.advance(10)
    assert quiet.bar is None  # stderr is no terminal
    soon = fingerprint._LazyProgress(100, live=True)
    monkeypatch.setattr(fingerprint, "PROGRESS_AFTER_S", 3600.0)
    soon.advance(10)
    assert soon.bar is None  # not yet a second
    monkeypatch.setattr(fingerprint, "PROGRESS_AFTER_S", 0.0)
    soon.advance(10)
    assert soon.bar is not None and soon.bar.tasks[0].completed == 20
    soon.stop()


def test_an_input_that_is_no_regular_file_is_one_line(reprun: Reprun, make_project: MakeProject,
                                                      tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    project = make_project("entry_points:\n  main:\n    parameters: {p: path}\n"
                           "    command: 'true'\n")
    result = reprun("run", str(project), "-P", f"p={fifo}", "--env-manager", "local")
    assert result.code == 1
    assert result.error_lines == [
        f"reprun: error: cannot read the input data: neither a regular file nor a directory "
        f"({fifo}); make the files readable, or leave them out of the inputs"]
