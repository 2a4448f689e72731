"""Projects run from git URLs and revisions: real repositories over file:// and smart HTTP."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Reprun, git
from gitserver import GitHttpServer

GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
SUB = "projects/v1.2"
TOKEN = "s3cret-token-4242"

MLPROJECT = """\
name: versioned
entry_points:
  main:
    parameters:
      sync: {type: string, default: ""}
    command: "python show.py {sync}"
"""
SHOW = """\
import os, pathlib, sys, time
version = pathlib.Path("VERSION").read_text().strip()
if len(sys.argv) > 1 and sys.argv[1]:
    sync = pathlib.Path(sys.argv[1])
    (sync / version).write_text(os.getcwd())
    deadline = time.monotonic() + 60
    while len(list(sync.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("peers", len(list(sync.iterdir())))
print(f"version={version} cwd={os.getcwd()}")
"""


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@dataclass
class Upstream:
    """A repository with main (A-B-C), a tag v1.0 on A and a branch feature (F) off A."""

    work: Path
    root: Path
    commits: dict[str, str] = field(default_factory=dict)

    @property
    def bare(self) -> Path:
        return self.root / "proj.git"

    @property
    def file_url(self) -> str:
        return f"file://{self.bare}"


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    work = tmp_path / "src" / "proj"
    write(work / SUB / "MLproject", MLPROJECT)
    write(work / SUB / "show.py", SHOW)
    write(work / SUB / "VERSION", "A\n")
    git(work, "init", "-q", "-b", "main")
    up = Upstream(work, tmp_path / "served")
    up.commits["A"] = commit_all(work, "A")
    git(work, "tag", "-a", "-m", "first release", "v1.0")
    for name in ("B", "C"):
        write(work / SUB / "VERSION", f"{name}\n")
        if name == "C":
            (work / "escape").symlink_to("..")
        up.commits[name] = commit_all(work, name)
    git(work, "checkout", "-q", "-b", "feature", up.commits["A"])
    write(work / SUB / "VERSION", "F\n")
    up.commits["F"] = commit_all(work, "F")
    git(work, "checkout", "-q", "main")
    up.root.mkdir()
    git(up.root, "clone", "-q", "--bare", str(work), str(up.bare))
    return up


@pytest.fixture
def server(upstream: Upstream) -> Iterator[GitHttpServer]:
    with GitHttpServer(upstream.root) as srv:
        yield srv


@pytest.fixture
def private(upstream: Upstream) -> Iterator[GitHttpServer]:
    with GitHttpServer(upstream.root, credentials=("alice", TOKEN)) as srv:
        yield srv


def run(reprun: Reprun, uri: str, *args: str, env: dict[str, str] | None = None) -> tuple[
        int, str, str, list[str]]:
    result = reprun("run", uri, *args, env={**GIT_ENV, **(env or {})})
    return result.code, result.stdout, result.stderr, result.error_lines


def assert_no_worktrees_left(reprun: Reprun) -> None:
    """Every checkout made for a run is gone, and the caches have forgotten its worktrees."""
    git_cache = reprun.home / "cache" / "git"
    assert [p.name for p in (git_cache / "checkouts").iterdir()] == []
    for repo in (git_cache / "repos").iterdir():
        if repo.is_dir():
            assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1, repo


def home_files_containing(reprun: Reprun, needle: str) -> list[Path]:
    found = []
    for path in reprun.home.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize(("version", "expected"), [
    ("feature", "F"), ("v1.0", "A"), ("FULL_B", "B"), ("SHORT_B", "B"), (None, "C"),
    ("HEAD~2", "A"),
])
def test_revision_forms_over_file_url(
    reprun: Reprun, upstream: Upstream, version: str | None, expected: str
) -> None:
    sha_b = upstream.commits["B"]
    given = {"FULL_B": sha_b, "SHORT_B": sha_b[:8]}.get(version or "", version)
    args = ["--version", given] if given else []
    code, out, err, _ = run(reprun, f"{upstream.file_url}#{SUB}", *args)
    assert code == 0, err
    assert f"version={expected} " in out
    source = reprun.last_record()["source"]
    assert source["resolved_commit"] == source["git_commit"] == upstream.commits[expected]
    assert source["requested_version"] == given
    assert source["subdirectory"] == SUB
    assert source["checkout"] == "clean"
    assert source["uri"] == upstream.file_url
    assert source["git_dirty"] is False
    assert source["git_branch"] == {"feature": "feature", None: "main"}.get(version)


def test_https_path_without_dot_git_and_default_branch(
    reprun: Reprun, upstream: Upstream, server: GitHttpServer
) -> None:
    code, out, err, _ = run(reprun, server.url("proj") + f"#{SUB}")
    assert code == 0, err
    assert "version=C " in out
    record = reprun.last_record()
    assert record["source"]["uri"] == server.url("proj")
    assert record["source"]["git_branch"] == "main"
    assert record["project"]["uri"] == server.url("proj") + f"#{SUB}"
    # the checkout made for the run is gone afterwards; the user's repository was never touched
    assert not Path(record["project"]["path"]).exists()
    assert_no_worktrees_left(reprun)
    assert git(upstream.work, "status", "--porcelain") == ""


def test_second_run_of_a_known_commit_makes_no_network_access(
    reprun: Reprun, upstream: Upstream, server: GitHttpServer
) -> None:
    url = server.url("proj.git") + f"#{SUB}"
    code, out, err, _ = run(reprun, url, "--version", upstream.commits["B"])
    assert code == 0, err
    assert server.requests, "the first run must fetch"
    server.stop()
    for version, expected in ((upstream.commits["B"], "B"), ("v1.0", "A"),
                              (upstream.commits["F"][:10], "F")):
        code, out, err, _ = run(reprun, url, "--version", version)
        assert code == 0, err
        assert f"version={expected} " in out
    # a branch may have moved, so it is fetched: with the server gone that is a clear error
    code, _, _, errors = run(reprun, url, "--version", "main")
    assert code == 1
    assert len(errors) == 1
    assert f"cannot reach 'http://127.0.0.1:{server.port}/proj.git'" in errors[0]


def test_two_concurrent_runs_of_different_revisions(
    reprun: Reprun, upstream: Upstream, server: GitHttpServer, tmp_path: Path
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    url = server.url("proj.git") + f"#{SUB}"
    procs = [reprun.popen("run", url, "--version", version, "-P", f"sync={sync}", env=GIT_ENV)
             for version in ("feature", "v1.0")]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "peers 2" in out  # both ran at the same time
    assert "version=F " in outputs[0][0]
    assert "version=A " in outputs[1][0]
    cwds = {path.name: path.read_text() for path in sync.iterdir()}
    assert cwds["F"] != cwds["A"]


def test_subdirectory_checks(reprun: Reprun, upstream: Upstream) -> None:
    for sub, message in (("projects/../..", "leaves the repository ('..' is not allowed)"),
                         ("/etc", "is an absolute path"),
                         ("projects/v9", "subdirectory 'projects/v9' does not exist in"),
                         ("escape", "subdirectory 'escape' leaves the repository in")):
        code, _, _, errors = run(reprun, f"{upstream.file_url}#{sub}")
        assert code == 2
        assert len(errors) == 1
        assert message in errors[0]


def test_unknown_revision_names_revision_and_url_without_token(
    reprun: Reprun, upstream: Upstream, private: GitHttpServer
) -> None:
    url = private.url("proj.git", "alice", TOKEN)
    code, out, err, errors = run(reprun, f"{url}#{SUB}", "--version", "no-such-branch")
    assert code == 2
    assert errors == [f"reprun: error: revision 'no-such-branch' not found in "
                      f"'http://127.0.0.1:{private.port}/proj.git'; give a branch, a tag or a "
                      "commit SHA of that repository"]
    assert TOKEN not in out + err
    assert home_files_containing(reprun, TOKEN) == []


def test_wrong_or_missing_credentials(
    reprun: Reprun, upstream: Upstream, private: GitHttpServer
) -> None:
    shown = f"http://127.0.0.1:{private.port}/proj.git"
    for url in (private.url("proj.git", "alice", "wrong-token-777"), private.url("proj.git")):
        code, out, err, errors = run(reprun, f"{url}#{SUB}")
        assert code == 1
        assert len(errors) == 1
        assert errors[0].startswith(f"reprun: error: authentication failed for '{shown}'")
        assert "wrong-token-777" not in out + err
    assert home_files_containing(reprun, "wrong-token-777") == []


def test_token_in_url_works_and_is_never_written(
    reprun: Reprun, upstream: Upstream, private: GitHttpServer, tmp_path: Path
) -> None:
    # a git that logs its command lines, to show the token is not among them
    spy_dir, argv_log = tmp_path / "spy-bin", tmp_path / "git-argv.log"
    spy_dir.mkdir()
    (spy_dir / "git").write_text(f'#!/bin/sh\necho "$@" >> {argv_log}\n'
                                 f'exec {shutil.which("git")} "$@"\n')
    (spy_dir / "git").chmod(0o755)
    url = private.url("proj.git", "alice", TOKEN) + f"#{SUB}"
    code, out, err, _ = run(reprun, url, "--version", "feature",
                            env={"PATH": f"{spy_dir}:{os.environ['PATH']}"})
    assert code == 0, err
    assert " fetch " in argv_log.read_text()
    assert TOKEN not in argv_log.read_text()
    assert "version=F " in out
    assert TOKEN not in out + err
    record = reprun.last_record()
    assert record["source"]["uri"] == f"http://127.0.0.1:{private.port}/proj.git"
    assert record["source"]["git_remote"] == record["source"]["uri"]
    assert home_files_containing(reprun, TOKEN) == []
    assert TOKEN not in reprun("runs", "show", record["run_id"]).stdout


def test_bad_urls_and_paths(reprun: Reprun, upstream: Upstream, server: GitHttpServer) -> None:
    cases = [
        (server.url("nope.git"), 1, "reprun: error: no git repository at "
                                    f"'http://127.0.0.1:{server.port}/nope.git'"),
        ("file:///no/such/repo.git", 2, "'file:///no/such/repo.git' names '/no/such/repo.git', "
                                        "which does not exist"),
        ("./myprojct", 2, "project directory './myprojct' does not exist; check the path"),
        ("example.org/org/repo", 2, "write its URL, e.g. 'https://example.org/org/repo'"),
    ]
    for uri, exit_code, message in cases:
        code, _, _, errors = run(reprun, uri)
        assert code == exit_code, uri
        assert len(errors) == 1, errors
        assert message in errors[0]
    assert not (reprun.home / "cache" / "git" / "repos").exists() or not any(
        p.is_dir() for p in (reprun.home / "cache" / "git" / "repos").iterdir())


def test_git_not_installed(reprun: Reprun, tmp_path: Path, upstream: Upstream) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    code, _, _, errors = run(reprun, upstream.file_url, env={"PATH": str(empty)})
    assert code == 1
    assert errors == ["reprun: error: git is not installed (no 'git' program on PATH); install "
                      "git (e.g. 'apt-get install git') to run projects from git repositories"]


def test_ssh_and_scp_like_urls(reprun: Reprun, upstream: Upstream, tmp_path: Path) -> None:
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text('#!/bin/sh\n# runs the remote command here\nfor last; do :; done\n'
                        'exec sh -c "$last"\n')
    fake_ssh.chmod(0o755)
    env = {"GIT_SSH_COMMAND": str(fake_ssh), "GIT_SSH_VARIANT": "simple"}
    for url in (f"ssh://git@localhost{upstream.bare}", f"git@localhost:{upstream.bare}"):
        code, out, err, _ = run(reprun, f"{url}#{SUB}", "--version", "v1.0", env=env)
        assert code == 0, err
        assert "version=A " in out
        assert reprun.last_record()["source"]["uri"] == url
    refused = tmp_path / "refused-ssh"
    refused.write_text("#!/bin/sh\necho 'ssh: connect to host localhost port 22: Connection "
                       "refused' >&2\nexit 255\n")
    refused.chmod(0o755)
    code, _, _, errors = run(reprun, "git@localhost:org/other.git",
                             env={**env, "GIT_SSH_COMMAND": str(refused)})
    assert code == 1
    assert errors[0].startswith("reprun: error: cannot reach 'git@localhost:org/other.git'")


def test_dirty_local_tree_runs_in_place_and_its_patch_reapplies(
    reprun: Reprun, upstream: Upstream, tmp_path: Path
) -> None:
    work = upstream.work
    write(work / ".gitignore", "*.log\n")
    head = commit_all(work, "ignore logs")
    write(work / SUB / "VERSION", "dirty\n")                      # unstaged change
    write(work / "staged.txt", "staged\n")
    git(work, "add", "staged.txt")                               # staged new file
    write(work / "notes" / "untracked.txt", "untracked\n")        # untracked file
    (work / "blob.bin").write_bytes(bytes(range(256)))           # untracked binary file
    write(work / "debug.log", "ignored\n")                       # ignored: not in the patch
    status_before = git(work, "status", "--porcelain")
    code, out, err, _ = run(reprun, f"{work}#{SUB}")
    assert code == 0, err
    assert f"version=dirty cwd={work / SUB}" in out
    record = reprun.last_record()
    source = record["source"]
    assert (source["checkout"], source["git_dirty"], source["resolved_commit"]) == (
        "in-place", True, head)
    assert source["uri"] == str(work)
    assert source["subdirectory"] == SUB
    assert git(work, "status", "--porcelain") == status_before   # the user's index untouched
    patch = reprun.home / "runs" / record["run_id"] / source["patch_file"]
    assert b"debug.log" not in patch.read_bytes()
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(work), str(fresh))
    git(fresh, "checkout", "-q", source["resolved_commit"])
    git(fresh, "apply", str(patch))
    for rel in (f"{SUB}/VERSION", "staged.txt", "notes/untracked.txt", "blob.bin"):
        assert (fresh / rel).read_bytes() == (work / rel).read_bytes(), rel


def test_local_repository_with_version_leaves_the_users_checkout_alone(
    reprun: Reprun, upstream: Upstream
) -> None:
    work = upstream.work
    write(work / SUB / "VERSION", "local edit\n")
    before = [git(work, *a) for a in (("status", "--porcelain"), ("branch", "-a"), ("remote",),
                                      ("rev-parse", "HEAD"), ("stash", "list"))]
    code, out, err, _ = run(reprun, str(work / SUB), "--version", "v1.0")
    assert code == 0, err
    assert "version=A " in out
    assert str(work) not in out.split("cwd=")[1]
    source = reprun.last_record()["source"]
    assert (source["checkout"], source["resolved_commit"], source["subdirectory"]) == (
        "clean", upstream.commits["A"], SUB)
    assert source["requested_version"] == "v1.0"
    after = [git(work, *a) for a in (("status", "--porcelain"), ("branch", "-a"), ("remote",),
                                     ("rev-parse", "HEAD"), ("stash", "list"))]
    assert after == before
    assert (work / SUB / "VERSION").read_text() == "local edit\n"
    for version, expected, branch in (("HEAD~1", "B", None), ("feature", "F", "feature")):
        code, out, err, _ = run(reprun, f"{work}#{SUB}", "--version", version)
        assert code == 0, err
        assert f"version={expected} " in out
        source = reprun.last_record()["source"]
        assert (source["resolved_commit"], source["git_branch"]) == (
            upstream.commits[expected], branch)
    code, _, _, errors = run(reprun, str(work), "--version", "nope")
    assert errors == [f"reprun: error: revision 'nope' not found in '{work}'; give a branch, "
                      "a tag or a commit SHA of that repository"]


def test_version_on_a_directory_outside_git(reprun: Reprun, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    write(plain / "MLproject", "name: plain\nentry_points:\n  main:\n    command: 'true'\n")
    code, _, _, errors = run(reprun, str(plain), "--version", "main")
    assert code == 2
    assert errors == [f"reprun: error: --version needs a git repository, and '{plain}' is not in "
                      "one; drop --version to run the directory as it is"]


def make_repo(path: Path, files: dict[str, str], links: dict[str, tuple[str, str]]) -> str:
    """A repository with ``files`` and submodule gitlinks ``{path: (url, commit)}``."""
    for rel, text in files.items():
        write(path / rel, textwrap.dedent(text))
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
    if links:
        write(path / ".gitmodules", "".join(
            f'[submodule "{rel}"]\n\tpath = {rel}\n\turl = {url}\n'
            for rel, (url, _sha) in links.items()))
    git(path, "add", "-A")
    for rel, (_url, sha) in links.items():
        git(path, "update-index", "--add", "--cacheinfo", f"160000,{sha},{rel}")
    git(path, "commit", "-q", "-m", "commit")
    return git(path, "rev-parse", "HEAD")


def test_submodules_recursive_at_recorded_commits(reprun: Reprun, tmp_path: Path) -> None:
    src, served = tmp_path / "subsrc", tmp_path / "subserved"
    served.mkdir()
    inner = make_repo(src / "inner", {"INNER": "inner-1\n"}, {})
    lib = make_repo(src / "lib", {"LIB": "lib-1\n"}, {"inner": ("../inner.git", inner)})
    make_repo(src / "lib", {"LIB": "lib-2 (not recorded)\n"}, {})
    top = make_repo(src / "super", {
        "MLproject": "name: super\nentry_points:\n  main:\n"
                     "    command: cat libs/rel/LIB libs/rel/inner/INNER libs/abs/INNER\n",
    }, {"libs/rel": ("../lib.git", lib), "libs/abs": (f"file://{served}/inner.git", inner)})
    for name in ("inner", "lib", "super"):
        git(served, "clone", "-q", "--bare", str(src / name), str(served / f"{name}.git"))
    expected = [{"path": "libs/abs", "commit": inner, "url": f"file://{served}/inner.git"},
                {"path": "libs/rel", "commit": lib},
                {"path": "libs/rel/inner", "commit": inner}]
    with GitHttpServer(served) as srv:
        code, out, err, _ = run(reprun, srv.url("super.git"))
        assert code == 0, err
        assert out.split() == ["lib-1", "inner-1", "inner-1"]
        subs = reprun.last_record()["source"]["submodules"]
        expected[1]["url"] = srv.url("lib.git")
        expected[2]["url"] = srv.url("inner.git")
        assert subs == expected
        srv.stop()
        code, out, err, _ = run(reprun, srv.url("super.git"), "--version", top)
    assert code == 0, err  # every submodule commit came from the cache
    assert out.split() == ["lib-1", "inner-1", "inner-1"]
    assert_no_worktrees_left(reprun)


def test_submodule_commit_missing_upstream(reprun: Reprun, tmp_path: Path) -> None:
    src, served = tmp_path / "subsrc", tmp_path / "subserved"
    served.mkdir()
    make_repo(src / "lib", {"LIB": "lib\n"}, {})
    git(served, "clone", "-q", "--bare", str(src / "lib"), str(served / "lib.git"))
    ghost = "1" * 40
    spec = "name: s\nentry_points:\n  main:\n    command: 'true'\n"
    make_repo(src / "super", {"MLproject": spec}, {"lib": ("../lib.git", ghost)})
    git(served, "clone", "-q", "--bare", str(src / "super"), str(served / "super.git"))
    code, _, _, errors = run(reprun, f"file://{served}/super.git")
    assert code == 2
    assert errors == [f"reprun: error: submodule 'lib': commit {ghost} not found in "
                      f"'file://{served}/lib.git'; push that commit to the submodule's repository"]
    assert_no_worktrees_left(reprun)


def test_dry_run_of_a_url_leaves_no_checkout(reprun: Reprun, upstream: Upstream) -> None:
    result = reprun("run", f"{upstream.file_url}#{SUB}", "--version", "v1.0", "--dry-run",
                    "--json", env=GIT_ENV)
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["source"]["resolved_commit"] == upstream.commits["A"]
    checkouts = reprun.home / "cache" / "git" / "checkouts"
    assert list(checkouts.iterdir()) == []


def test_leftover_checkout_of_a_dead_run_is_swept(reprun: Reprun, upstream: Upstream) -> None:
    checkouts = reprun.home / "cache" / "git" / "checkouts"
    dead = checkouts / "co-dead"
    dead.mkdir(parents=True)
    (dead / "owner").write_text("999999999 1\n")
    code, _, err, _ = run(reprun, f"{upstream.file_url}#{SUB}", "--version", "v1.0")
    assert code == 0, err
    assert not dead.exists()
