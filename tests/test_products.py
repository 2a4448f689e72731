"""Products are no code change: new files holding an output of a finished run in the store stay
out of the dirty flag, the patch and the snapshot, and the record says why."""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

from tests.conftest import MakeProject, Reprun, git, init_repo

WRITES_MODEL = """\
import os, pathlib
weights = b"trained weights " * 100
pathlib.Path(os.environ["REPRUN_OUTPUT_DIR"], "model.pkl").write_bytes(weights)
pathlib.Path("model.pkl").write_bytes(weights)  # also into the project, in place
"""
MLPROJECT = "name: products\nentry_points:\n  main:\n    command: $PROBE_PY train.py\n"
ENV = {"PROBE_PY": sys.executable, "REPRUN_MLFLOW_CAPTURE": "off"}


def _run(reprun: Reprun, project: Path) -> dict[str, object]:
    result = reprun("run", str(project), "--env-manager", "local", env=ENV)
    assert result.code == 0, result.stderr
    return reprun.last_record()


def test_a_run_output_in_a_git_project_is_no_change(reprun: Reprun,
                                                    make_project: MakeProject) -> None:
    project = make_project(MLPROJECT, files={"train.py": WRITES_MODEL}, name="products")
    init_repo(project)
    first = _run(reprun, project)
    assert first["source"]["git_dirty"] is False  # type: ignore[index]
    second = _run(reprun, project)  # model.pkl is now an untracked file of the project
    source = second["source"]
    assert source["git_dirty"] is False and source["patch_file"] is None  # type: ignore[index]
    run8 = str(first["run_id"])[:8]
    assert source["left_out"] == [f"model.pkl (output of run {run8}: model.pkl)"]  # type: ignore[index]
    # copied under another name by the user: left out all the same
    shutil.copyfile(project / "model.pkl", project / "best.pkl")
    third = _run(reprun, project)["source"]
    assert third["git_dirty"] is False  # type: ignore[index]
    assert f"best.pkl (output of run {run8}: model.pkl)" in third["left_out"]  # type: ignore[index]


def test_other_new_files_and_tracked_files_still_count(reprun: Reprun,
                                                       make_project: MakeProject) -> None:
    project = make_project(MLPROJECT, files={"train.py": WRITES_MODEL,
                                             "tracked.bin": "old\n"}, name="products")
    init_repo(project)
    _run(reprun, project)
    (project / "notes.txt").write_text("not an output of any run\n")
    record = _run(reprun, project)
    assert record["source"]["git_dirty"] is True  # type: ignore[index]
    patch = (reprun.home / "runs" / str(record["run_id"]) / "source.patch").read_text()
    assert "notes.txt" in patch and "model.pkl" not in patch
    (project / "notes.txt").unlink()
    # a tracked file that now holds an output's content is a change all the same
    shutil.copyfile(project / "model.pkl", project / "tracked.bin")
    source = _run(reprun, project)["source"]
    assert source["git_dirty"] is True and source["patch_file"]  # type: ignore[index]
    assert not any("tracked.bin" in e for e in source["left_out"])  # type: ignore[index]
    git(project, "status", "--short")  # the user's index is untouched and still readable


def test_a_project_outside_git_leaves_run_outputs_out_of_its_snapshot(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT, files={"train.py": WRITES_MODEL}, name="products")
    first = _run(reprun, project)
    (project / "other.txt").write_text("kept\n")
    second = _run(reprun, project)
    source = second["source"]
    run8 = str(first["run_id"])[:8]
    assert source["left_out"] == [f"model.pkl (output of run {run8}: model.pkl)"]  # type: ignore[index]
    assert "model.pkl" in source["snapshot"]["excluded"]  # type: ignore[index]
    run_dir = reprun.home / "runs" / str(second["run_id"])
    with tarfile.open(run_dir / "source.tar.gz") as tar:
        names = tar.getnames()
    assert "other.txt" in names and "train.py" in names and "model.pkl" not in names
