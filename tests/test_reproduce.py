"""reprun reproduce and export: real runs, real git repositories, a brand-new REPRUN_HOME."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, MakeProject, Reprun, git, init_repo

PATCH_LINE = ('\nPath(os.environ["REPRUN_OUTPUT_DIR"], "patched.txt")'
              '.write_text("from the patch\\n")\n')


def wine_repo(root: Path) -> tuple[Path, str]:
    """The elasticnet example as a git repository with an uncommitted change that shows in its
    outputs (it writes patched.txt)."""
    repo = root / "wine"
    shutil.copytree(EXAMPLES / "elasticnet-wine", repo)
    commit = init_repo(repo)
    with (repo / "train.py").open("a") as handle:
        handle.write(PATCH_LINE)
    return repo, commit


def outputs(record: dict[str, Any]) -> dict[str, str]:
    return {o["path"]: o["digest"] for o in record["outputs"]}


def fresh(reprun: Reprun, name: str = "other-machine") -> Reprun:
    """Another REPRUN_HOME: an empty store and no caches."""
    home = reprun.home.parent / name
    assert not home.exists()
    return Reprun(home, reprun.cwd)


def test_export_then_reproduce_with_a_brand_new_home(reprun: Reprun, tmp_path: Path) -> None:
    repo, commit = wine_repo(tmp_path)
    assert reprun("run", str(repo), "-P", "alpha=0.2", "-q").code == 0
    original = reprun.last_record()
    assert original["source"]["git_dirty"] and "patched.txt" in outputs(original)
    wine = (repo / "data" / "wine.csv").read_bytes()
    assert [(i["name"], i["kind"], i["size"]) for i in original["inputs"]] == [
        ("data/wine.csv", "data", len(wine))]
    exported = tmp_path / "carried.tar.gz"
    result = reprun("export", original["run_id"][:8], "-o", str(exported))
    assert result.code == 0, result.stderr
    with tarfile.open(exported) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "run.json", "source.patch", "python.lock.txt",
            "spec/MLproject"} <= names
    git(repo, "checkout", "--", "train.py")  # the change is gone from the working copy

    other = fresh(reprun)
    result = other("reproduce", str(exported), "--check")
    assert result.code == 0, result.stderr
    assert "outputs identical: 3 file(s)" in result.stderr
    new = other.last_record()
    assert new["reproduces"] == original["run_id"]
    assert new["reproduction"]["source"] == "git"
    assert new["reproduction"]["check"]["result"] == "identical"
    assert new["source"]["resolved_commit"] == commit and new["source"]["checkout"] == "clean"
    assert new["source"]["patch_sha256"] == original["source"]["patch_sha256"]
    assert new["environment"]["lock_sha256"] == original["environment"]["lock_sha256"]
    assert new["parameters"] == original["parameters"] and new["command"] == original["command"]
    assert outputs(new) == outputs(original)
    assert new["inputs"] == original["inputs"] and new["reproduction"]["input_drift"] == []
    assert git(repo, "status", "--porcelain") == ""  # the user's working copy is untouched
    assert [r["run_id"] for r in other("runs", "list", "--json").json()] == [new["run_id"]]


def test_reproduce_a_url_run_at_its_commit_and_subdirectory(reprun: Reprun,
                                                            tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    shutil.copytree(EXAMPLES / "elasticnet-wine", repo / "models" / "wine")
    commit = init_repo(repo)
    url = f"file://{repo}#models/wine"
    assert reprun("run", url, "--version", "main", "-q").code == 0
    original = reprun.last_record()
    assert original["source"]["subdirectory"] == "models/wine"
    # main moves on, with a change that would alter the outputs
    script = repo / "models" / "wine" / "train.py"
    script.write_text(script.read_text().replace("TRAIN_ROWS = 300", "TRAIN_ROWS = 280"))
    git(repo, "commit", "-qam", "fewer rows")

    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 0, result.stderr
    new = reprun.last_record()
    assert new["source"]["resolved_commit"] == commit
    assert new["source"]["subdirectory"] == "models/wine"
    assert outputs(new) == outputs(original)


def test_project_outside_git_reproduces_from_its_snapshot(reprun: Reprun,
                                                          make_project: MakeProject) -> None:
    project = make_project(
        "entry_points:\n  main:\n    command: 'cp data/input.txt \"$REPRUN_OUTPUT_DIR/out.txt\"'\n",
        files={"data/input.txt": "first\n", ".gitignore": "*.log\ncache/\n",
               "debug.log": "noise\n", "cache/big.bin": "x" * 1000, ".venv/lib.py": "x = 1\n"},
    )
    assert reprun("run", str(project), "-q").code == 0
    original = reprun.last_record()
    snapshot = original["source"]["snapshot"]
    assert snapshot["excluded"] == [".venv/", "cache/", "debug.log"]
    assert snapshot["excluded_count"] == 3 and snapshot["files"] == 3  # MLproject, .gitignore
    assert "*.log" in snapshot["rules"] and len(snapshot["sha256"]) == 64
    (project / "data" / "input.txt").write_text("changed since\n")

    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 0, result.stderr
    new = reprun.last_record()
    assert new["reproduction"]["source"] == "snapshot"
    assert new["source"]["snapshot"]["sha256"] == snapshot["sha256"]
    assert outputs(new) == outputs(original)
    assert (project / "data" / "input.txt").read_text() == "changed since\n"


def test_check_reports_a_different_output_and_a_gone_path(reprun: Reprun, tmp_path: Path,
                                                           make_project: MakeProject) -> None:
    data = tmp_path / "input.txt"
    data.write_text("one\n")
    project = make_project("""
        entry_points:
          main:
            parameters: {data: path}
            command: 'echo same > "$REPRUN_OUTPUT_DIR/same.txt";
              cp {data} "$REPRUN_OUTPUT_DIR/copy.txt"'
    """)
    init_repo(project)
    assert reprun("run", str(project), "-P", f"data={data}", "-q").code == 0
    original = reprun.last_record()
    data.write_text("two\n")

    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 1  # the input changed: nothing runs
    assert result.error_lines == [
        f"reprun: error: input 'data' of run {original['run_id'][:12]} changed: {data} (changed); "
        "restore the data, or pass --allow-drift to run anyway and record the drift"]
    assert len(reprun("runs", "list", "--json").json()) == 1

    result = reprun("reproduce", original["run_id"], "--check", "--allow-drift")
    assert result.code == 1
    assert f"reprun: drift: input 'data' changed: {data} (changed)" in result.stderr
    assert "reprun: outputs different: copy.txt" in result.stderr
    record = reprun.last_record()
    assert record["reproduction"]["check"] == {"result": "different", "different": ["copy.txt"],
                                               "missing": [], "extra": []}
    drift = record["reproduction"]["input_drift"]
    assert drift == [{"name": "data", "recorded": original["inputs"][0]["digest"],
                      "found": record["inputs"][0]["digest"], "files": [f"{data} (changed)"]}]

    data.unlink()
    result = reprun("reproduce", original["run_id"], "--check", "--allow-drift")
    assert f"warning: path parameter 'data' names '{data}', which is gone" in result.stderr
    assert f"reprun: drift: input 'data' changed: {data} (missing)" in result.stderr
    assert result.code == 1  # cp failed: the command's own exit code
    record = reprun.last_record()
    assert record["reproduction"]["missing_paths"] == {"data": str(data)}
    assert record["reproduction"]["check"]["missing"] == ["copy.txt"]
    assert record["inputs"] == [{**original["inputs"][0], "type": "missing", "digest": None,
                                 "size": 0, "files": 0}]


def fake_python(root: Path, packages: dict[str, str]) -> dict[str, str]:
    """A virtualenv whose python has exactly ``packages`` installed; PATH leading to it."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    set_packages(venv, packages)
    return {"PATH": f"{venv / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"}


def set_packages(venv: Path, packages: dict[str, str]) -> None:
    site = next(venv.glob("lib/python*/site-packages"))
    for old in site.glob("*.dist-info"):
        shutil.rmtree(old)
    for name, version in packages.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_lock_that_cannot_be_honoured_names_the_package(reprun: Reprun, tmp_path: Path,
                                                          make_project: MakeProject) -> None:
    env = fake_python(tmp_path, {"fakepkg": "1.0", "steady": "3.1"})
    project = make_project("entry_points:\n  main:\n    command: 'python -c \"print(42)\"'\n")
    init_repo(project)
    assert reprun("run", str(project), "-q", "--env-manager", "local", env=env).code == 0
    original = reprun.last_record()
    assert {"name": "fakepkg", "version": "1.0"} in original["environment"]["packages"]

    set_packages(tmp_path / "venv", {"steady": "3.1"})
    result = reprun("reproduce", original["run_id"], env=env)
    assert result.code == 1
    assert result.error_lines == [
        "reprun: error: the recorded lock local-packages.txt cannot be honoured here: fakepkg "
        "1.0 is locked but not installed; install exactly the locked versions, or pass "
        "--allow-drift to run with what is here and record the drift"]
    assert reprun.last_record()["status"] == "FAILED"

    set_packages(tmp_path / "venv", {"fakepkg": "2.0", "steady": "3.1"})
    result = reprun("reproduce", original["run_id"], env=env)
    assert "fakepkg is 1.0 in the lock but 2.0 here" in result.error_lines[0]

    result = reprun("reproduce", original["run_id"], "--allow-drift", env=env)
    assert result.code == 0, result.stderr
    assert "reprun: drift: fakepkg: locked 1.0, here 2.0" in result.stderr
    new = reprun.last_record()
    assert new["reproduction"]["drift"] == [{"entry": "fakepkg", "recorded": "1.0",
                                             "found": "2.0", "reason": None}]
    assert new["environment"]["lock_sha256"] != original["environment"]["lock_sha256"]


def test_source_errors_are_one_line(reprun: Reprun, tmp_path: Path) -> None:
    repo, _commit = wine_repo(tmp_path)
    assert reprun("run", str(repo), "-q").code == 0
    run_id = reprun.last_record()["run_id"]
    exported = tmp_path / "carried.tar.gz"
    assert reprun("export", run_id, "-o", str(exported)).code == 0

    patch = reprun.home / "runs" / run_id / "source.patch"
    patch.write_bytes(patch.read_bytes() + b"\n")
    result = reprun("reproduce", run_id)
    assert result.error_lines == [
        f"reprun: error: the patch '{patch}' does not match its sha256 in the record; the file "
        "was changed; reproduce from an untouched export"]

    repo.rename(tmp_path / "moved")
    result = fresh(reprun)("reproduce", str(exported))
    assert result.code == 1
    assert result.error_lines[0].startswith(
        f"reprun: error: the repository '{repo}' of run {run_id[:12]} is not on this machine "
        "and the run recorded no remote")

    not_export = tmp_path / "other.tar.gz"
    with tarfile.open(not_export, "w:gz") as tar:
        tar.add(tmp_path / "moved" / "MLproject", arcname="MLproject")
    result = reprun("reproduce", str(not_export))
    assert result.code == 2
    assert result.error_lines[0].startswith(
        f"reprun: error: '{not_export}' is not a file made by 'reprun export'")

    not_record = tmp_path / "notes.json"
    not_record.write_text('{"hello": 1}')
    result = reprun("reproduce", str(not_record))
    assert result.code == 2
    assert result.error_lines[0].startswith(
        f"reprun: error: '{not_record}' is not a reprun run record")


def test_a_project_too_large_to_snapshot_runs_and_says_it_cannot_be_reproduced(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo ran'\n")
    data = project / "data"
    data.mkdir()
    for index in range(17):  # 17 sparse files of 16 MiB: 272 MiB, no disk used
        with (data / f"part-{index:02d}.bin").open("wb") as handle:
            handle.truncate(16 * 1024 * 1024)
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert "warning: no snapshot: the project holds 272 MiB in 18 files outside git" in (
        result.stderr)
    record = reprun.last_record()
    assert record["source"]["snapshot"] is None
    assert ".reprunignore" in record["source"]["snapshot_skipped"]
    assert not (reprun.home / "runs" / record["run_id"] / "source.tar.gz").exists()
    again = reprun("reproduce", record["run_id"])
    assert again.code == 1
    assert again.error_lines[0].startswith(
        f"reprun: error: run {record['run_id'][:12]} kept no snapshot: the project holds 272 MiB")
