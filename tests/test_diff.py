"""reprun diff: exactly what changed between two real runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import EXAMPLES, MakeProject, Reprun, git, init_repo
from test_reproduce import fake_python, set_packages


def test_a_changed_parameter_and_a_changed_dependency(reprun: Reprun, tmp_path: Path) -> None:
    env = fake_python(tmp_path, {"fakepkg": "1.0", "steady": "3.1"})
    repo = tmp_path / "wine"
    shutil.copytree(EXAMPLES / "elasticnet-wine", repo)
    init_repo(repo)
    assert reprun("run", str(repo), "-P", "alpha=0.1", "-q", "--env-manager", "local",
                  env=env).code == 0
    first = reprun.last_record()["run_id"]
    set_packages(tmp_path / "venv", {"fakepkg": "2.0", "steady": "3.1"})
    assert reprun("run", str(repo), "-P", "alpha=0.2", "-q", "--env-manager", "local",
                  env=env).code == 0
    second = reprun.last_record()["run_id"]

    result = reprun("diff", first[:8], second, "--json")
    assert result.code == 0, result.stderr
    d = result.json()
    assert d["runs"] == {"a": first, "b": second}
    assert d["parameters"] == {"added": {}, "removed": {}, "changed": {"alpha": ["0.1", "0.2"]},
                               "same": 1}
    packages = d["environment"]["packages"]
    assert packages == {"added": {}, "removed": {}, "changed": {"fakepkg": ["1.0", "2.0"]},
                        "same": 1}
    assert d["environment"]["python"]["same"] and not d["environment"]["lock_sha256"]["same"]
    assert d["code"]["commit"]["same"] and d["code"]["files"] == []
    assert d["outputs"] == {"changed": ["metrics.json", "model.json"], "only_a": [],
                            "only_b": [], "same": 0}
    assert d["status"] == {"a": "FINISHED", "b": "FINISHED", "same": True}
    assert d["exit_code"]["same"] and d["backend"]["name"]["same"]
    assert d["host"]["changed"] == {} and d["host"]["same"] == 7

    text = reprun("diff", first, second).stdout
    assert text.endswith("\n") and not text.endswith("\n\n")  # a shell prompt starts a line
    marked = [line.split()[0] for line in text.splitlines() if line.endswith("*")]
    assert {"alpha", "fakepkg", "command", "lock_sha256", "metrics.json"} <= set(marked)
    assert not {"commit", "python", "status", "steady"} & set(marked)


def test_files_differing_between_commits_and_patches(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'cat *.txt'\n",
                           files={"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"})
    init_repo(project)
    assert reprun("run", str(project), "-q").code == 0
    first = reprun.last_record()["run_id"]
    (project / "a.txt").write_text("a2\n")
    git(project, "commit", "-qam", "change a")
    (project / "b.txt").write_text("b (uncommitted)\n")
    (project / "d.txt").write_text("new, untracked\n")
    assert reprun("run", str(project), "-q").code == 0
    second = reprun.last_record()["run_id"]

    code = reprun("diff", first, second, "--json").json()["code"]
    assert not code["commit"]["same"] and not code["patch_sha256"]["same"]
    assert code["files"] == ["a.txt", "b.txt", "d.txt"]


def test_snapshots_are_compared_file_by_file(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n",
                           files={"keep.py": "x = 1\n", "edit.py": "y = 1\n"})
    assert reprun("run", str(project), "-q").code == 0
    first = reprun.last_record()["run_id"]
    (project / "edit.py").write_text("y = 2\n")
    assert reprun("run", str(project), "-q").code == 0
    second = reprun.last_record()["run_id"]

    code = reprun("diff", first, second, "--json").json()["code"]
    assert code["files"] == ["edit.py"] and not code["snapshot_sha256"]["same"]


def test_diff_of_an_unknown_run(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n")
    assert reprun("run", str(project), "-q").code == 0
    run_id = reprun.last_record()["run_id"]
    result = reprun("diff", run_id, "feedface")
    assert result.code == 2
    assert result.error_lines[0].startswith("reprun: error: no run")
