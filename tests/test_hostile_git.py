"""Hostile repositories, records and URLs: nothing they hold runs, and no credential is on a
command line. Each test would create its marker file on a reprun that let the value through."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import Reprun, git, init_repo
from gitserver import GitHttpServer

GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
MLPROJECT = "name: hostile\nentry_points:\n  main:\n    command: \"python -c 'print(1)'\"\n"
TOKEN = "ghp_Zx9token7secret"


def repo_with_submodule_url(tmp_path: Path, sub_url: str) -> Path:
    """A repository whose .gitmodules gives submodule 'lib' the URL ``sub_url``."""
    work = tmp_path / "super"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    (work / ".gitmodules").write_text(f'[submodule "lib"]\n\tpath = lib\n\turl = {sub_url}\n')
    init_repo(work)
    git(work, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},lib")
    git(work, "commit", "-q", "-m", "add lib")
    return work


@pytest.mark.parametrize("template", [
    "--upload-pack=touch {marker}",
    "ext::sh -c touch% {marker}",
    "fd::17",
])
def test_submodule_url_runs_nothing(reprun: Reprun, tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    work = repo_with_submodule_url(tmp_path, template.format(marker=marker))
    result = reprun("run", f"file://{work}", "--dry-run", env=GIT_ENV)
    assert result.code != 0
    assert len(result.error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not list(tmp_path.rglob("pwned*"))


def test_project_uri_starting_with_dash_runs_nothing(reprun: Reprun, tmp_path: Path) -> None:
    # scp-like (no '/' before the '@'), so taken for a URL; git runs 'touch' in reprun's cwd
    result = reprun("run", "--dry-run", "--", "--upload-pack=touch pwned@x:y", env=GIT_ENV)
    assert result.code == 2, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert "is not a git URL" in result.error_lines[0]
    assert not list(tmp_path.rglob("pwned*"))


def _recorded_run(reprun: Reprun, tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A finished run of a git project; returns its run.json path and the record."""
    work = tmp_path / "proj"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    init_repo(work)
    done = reprun("run", str(work), "-q", "--env-manager", "local", env=GIT_ENV)
    assert done.code == 0, done.stderr
    record = reprun.last_record()
    return reprun.home / "runs" / str(record["run_id"]) / "run.json", record


def _hostile_copy(tmp_path: Path, original: Path, name: str, change: dict[str, object]) -> Path:
    data = json.loads(original.read_text())
    data["source"].update(change)
    target = tmp_path / name
    target.mkdir()
    (target / "run.json").write_text(json.dumps(data))
    return target / "run.json"


def test_recorded_commit_cannot_become_a_git_option(reprun: Reprun, tmp_path: Path) -> None:
    run_json, _ = _recorded_run(reprun, tmp_path)
    written = tmp_path / "written-by-git"
    bad = _hostile_copy(tmp_path, run_json, "bad",
                        {"resolved_commit": f"--output={written}", "git_commit": None})
    for args in (("diff", str(bad), str(run_json)), ("reproduce", str(bad))):
        result = reprun(*args, env=GIT_ENV)
        assert result.code == 2, result.stderr
        assert len(result.error_lines) == 1
        assert "source.resolved_commit: '--output=" in result.error_lines[0]
        assert "is not a full commit SHA" in result.error_lines[0]
        assert not written.exists()


def test_recorded_uri_cannot_become_a_git_option(reprun: Reprun, tmp_path: Path) -> None:
    run_json, _ = _recorded_run(reprun, tmp_path)
    for field in ("uri", "git_remote"):
        change = {"uri": None, "git_remote": None, field: "--upload-pack=touch pwned@x:y"}
        bad = _hostile_copy(tmp_path, run_json, f"bad-{field}", change)
        result = reprun("reproduce", str(bad), env=GIT_ENV)
        assert result.code == 2, result.stderr
        assert len(result.error_lines) == 1
        assert "is not a git URL" in result.error_lines[0]
        assert not list(tmp_path.rglob("pwned*"))


def test_recorded_file_names_stay_in_the_run_directory(reprun: Reprun, tmp_path: Path) -> None:
    run_json, _ = _recorded_run(reprun, tmp_path)
    bad = _hostile_copy(tmp_path, run_json, "bad", {"patch_file": "../../../etc/passwd"})
    result = reprun("reproduce", str(bad), env=GIT_ENV)
    assert result.code == 2
    assert result.error_lines == [
        f"reprun: error: '{bad}' is not a usable reprun run record (source.patch_file: "
        "'../../../etc/passwd' is not a plain file name); give a run id, a run.json or a file "
        "made by 'reprun export'"]


def test_a_recorded_metrics_file_stays_in_the_run_directory(reprun: Reprun,
                                                            tmp_path: Path) -> None:
    run_json, _ = _recorded_run(reprun, tmp_path)
    data = json.loads(run_json.read_text())
    data["metrics_file"] = "../../../etc/passwd"
    run_json.write_text(json.dumps(data))  # the store's own record, tampered with
    message = (f"reprun: error: '{run_json}' is not a usable reprun run record (metrics_file: "
               "'../../../etc/passwd' is not a plain file name); give a run id, a run.json or "
               "a file made by 'reprun export'")
    for args in (("export", data["run_id"], "-o", str(tmp_path / "x.tar.gz")),
                 ("reproduce", data["run_id"])):
        result = reprun(*args, env=GIT_ENV)
        assert result.code == 2 and result.error_lines == [message], result.stderr
    assert not (tmp_path / "x.tar.gz").exists()


def hostile_config_repo(tmp_path: Path, marker_dir: Path) -> Path:
    """A repository whose own .git/config runs programs (each one touches a marker) and that
    has uncommitted changes, so reprun's add/diff of the patch would trigger them."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    (work / ".gitattributes").write_text("*.txt filter=evil diff=evil\n")
    (work / "data.txt").write_text("one\n")
    init_repo(work)
    hooks = work / "evil-hooks"
    hooks.mkdir()
    for hook in ("post-checkout", "pre-commit", "post-index-change", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker_dir}/hook-{hook}\n")
        (hooks / hook).chmod(0o755)
    for key, value in {
        "core.fsmonitor": f"touch {marker_dir}/fsmonitor; false",
        "filter.evil.clean": f"touch {marker_dir}/clean; cat",
        "filter.evil.smudge": f"touch {marker_dir}/smudge; cat",
        "filter.evil.required": "true",
        "diff.evil.textconv": f"touch {marker_dir}/textconv; cat",
        "diff.external": f"touch {marker_dir}/external",
        "core.hooksPath": str(hooks),
        "core.pager": f"touch {marker_dir}/pager; cat",
    }.items():
        git(work, "config", key, value)
    (work / "data.txt").write_text("two\n")
    (work / "new.txt").write_text("new\n")
    return work


def test_repository_config_runs_nothing(reprun: Reprun, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    work = hostile_config_repo(tmp_path, markers)
    for args in (("--dry-run",), ("--dry-run", "--version", "main")):
        result = reprun("run", str(work), *args, env=GIT_ENV)
        assert result.code == 0, result.stderr
        assert sorted(p.name for p in markers.iterdir()) == []
    result = reprun("run", str(work), "-q", "--env-manager", "local", env=GIT_ENV)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    patch = (reprun.home / "runs" / record["run_id"] / record["source"]["patch_file"]).read_text()
    assert "+two" in patch and "new.txt" in patch  # the raw changes, not a filter's output
    assert sorted(p.name for p in markers.iterdir()) == []


def test_users_own_global_config_still_applies(reprun: Reprun, tmp_path: Path) -> None:
    """A filter the user defines in their global config (git-lfs, say) keeps working."""
    markers = tmp_path / "markers"
    markers.mkdir()
    work = hostile_config_repo(tmp_path, markers)
    global_config = tmp_path / "gitconfig"
    global_config.write_text(f'[filter "evil"]\n\tclean = touch {markers}/global-clean; cat\n')
    result = reprun("run", str(work), "--dry-run",
                    env={"GIT_CONFIG_GLOBAL": str(global_config), "GIT_CONFIG_NOSYSTEM": "1"})
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in markers.iterdir()) == ["global-clean"]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    work = tmp_path / "src"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    init_repo(work)
    root = tmp_path / "served"
    root.mkdir()
    git(root, "clone", "-q", "--bare", str(work), str(root / "proj.git"))
    return root


@pytest.mark.parametrize(("user", "password"), [(TOKEN, ""), ("alice", TOKEN)])
def test_no_credential_on_any_command_line(reprun: Reprun, served: Path, tmp_path: Path,
                                           user: str, password: str) -> None:
    trace = tmp_path / "git-trace.log"
    spy_dir, argv_log = tmp_path / "spy-bin", tmp_path / "git-argv.log"
    spy_dir.mkdir()
    (spy_dir / "git").write_text(f'#!/bin/sh\necho "$@" >> {argv_log}\n'
                                 f'exec {shutil.which("git")} "$@"\n')
    (spy_dir / "git").chmod(0o755)
    with GitHttpServer(served, credentials=(user, password)) as srv:
        auth = f"{user}:{password}@" if password else f"{user}@"
        url = f"http://{auth}127.0.0.1:{srv.port}/proj.git"
        env = {**GIT_ENV, "GIT_TRACE": str(trace), "PATH": f"{spy_dir}:{os.environ['PATH']}"}
        result = reprun("run", url, "--dry-run", env=env)
        assert result.code == 0, result.stderr
        assert any(r.startswith("POST") for r in srv.requests)  # it authenticated and fetched
    traced = trace.read_text()
    assert "git-remote-http" in traced and " fetch " in argv_log.read_text()
    assert TOKEN not in traced
    assert TOKEN not in argv_log.read_text()
    assert TOKEN not in result.stdout + result.stderr


def test_protocol_allow_list_overrides_the_environment(reprun: Reprun, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    work = repo_with_submodule_url(tmp_path, f"ext::sh -c touch% {marker}")
    env = {**GIT_ENV, "GIT_ALLOW_PROTOCOL": "ext:file", "REPRUN_GIT_PROTOCOLS": "ext:fd"}
    result = reprun("run", f"file://{work}", "--dry-run", env=env)
    assert result.code != 0
    assert not marker.exists()


def test_pinned_commit_in_the_cache_runs_when_its_path_is_gone(
    reprun: Reprun, tmp_path: Path
) -> None:
    work = tmp_path / "gone"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    commit = init_repo(work)
    assert reprun("run", f"file://{work}", "--dry-run", env=GIT_ENV).code == 0
    shutil.rmtree(work)
    for version in (commit, commit[:10]):
        result = reprun("run", f"file://{work}", "--version", version, "--dry-run", "--json",
                        env=GIT_ENV)
        assert result.code == 0, result.stderr
    result = reprun("run", f"file://{work}", "--version", "1" * 40, "--dry-run", env=GIT_ENV)
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "no git repository at" in result.error_lines[0]


def test_reproduce_from_the_cache_when_the_repository_is_gone(
    reprun: Reprun, tmp_path: Path
) -> None:
    work = tmp_path / "gone"
    work.mkdir()
    (work / "MLproject").write_text(MLPROJECT)
    commit = init_repo(work)
    done = reprun("run", f"file://{work}", "-q", "--env-manager", "local", env=GIT_ENV)
    assert done.code == 0, done.stderr
    run_id = reprun.last_record()["run_id"]
    shutil.rmtree(work)
    result = reprun("reproduce", run_id, "-q", env=GIT_ENV)
    assert result.code == 0, result.stderr
    assert reprun.last_record()["source"]["resolved_commit"] == commit


def test_pinned_commit_in_the_cache_runs_when_the_server_is_down(
    reprun: Reprun, served: Path
) -> None:
    with GitHttpServer(served) as srv:
        url = srv.url("proj.git")
        assert reprun("run", url, "--dry-run", env=GIT_ENV).code == 0
        commit = git(served / "proj.git", "rev-parse", "HEAD")
    for version in (commit, commit[:10]):
        result = reprun("run", url, "--version", version, "--dry-run", env=GIT_ENV)
        assert result.code == 0, result.stderr
