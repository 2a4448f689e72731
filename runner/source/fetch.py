"""A cache of bare clones, and clean checkouts of exact commits made from it.

Each repository URL gets one bare repository under the cache root, keyed by the URL without
credentials. A run fetches only when the cache cannot answer: a commit SHA or a tag already in the
cache needs no network at all; a branch (or the default branch) is fetched to see where it is now.
The URL is passed to ``git fetch`` on each call and never written into the cache's config.

Every run gets its own detached ``git worktree`` of the resolved commit, and each submodule (at
the commit the superproject records, relative URLs included) a worktree of its own cached clone,
so concurrent runs of different revisions never disturb each other. A file lock per repository
serialises fetching and worktree bookkeeping; runs share nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from runner.errors import ProjectNotFoundError, SourceError, UsageError
from runner.frozen import frozen
from runner.process import process_alive, process_start_ticks
from runner.record.types import SubmoduleInfo
from runner.redact import redact_url
from runner.source.git import (
    FETCH_TIMEOUT_S,
    check_url,
    fetch_error,
    git_output,
    last_line,
    run_git,
    transport,
)
from runner.source.uri import cache_name, join_url

_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
HEAD_REF = "refs/reprun/HEAD"
MAX_SUBMODULE_DEPTH = 10


@frozen
class CleanCheckout:
    """A fresh checkout of ``commit``: ``tree`` is its root, ``scratch`` is removed afterwards."""

    tree: Path
    scratch: Path
    commit: str
    branch: str | None
    submodules: tuple[SubmoduleInfo, ...]
    repos: tuple[Path, ...]


def cache_root(env: Mapping[str, str]) -> Path:
    """REPRUN_CACHE_DIR, else REPRUN_HOME/cache (REPRUN_HOME defaults to ~/.reprun)."""
    configured = env.get("REPRUN_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    home = env.get("REPRUN_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".reprun") / "cache"


def check_version(version: str) -> None:
    if not version.strip() or version.startswith("-") or any(c.isspace() for c in version):
        raise UsageError(f"--version '{version}' is not a git revision",
                         hint="give a branch, a tag or a commit SHA")


def clean_checkout(
    url: str, version: str | None, env: Mapping[str, str], *, local_refs: bool = False,
    submodule_base: str | None = None,
) -> CleanCheckout:
    """Fetch what is missing of ``url`` and check out ``version`` (default branch if None).

    ``local_refs`` also takes the remote-tracking branches of ``url`` (a user's own repository);
    ``submodule_base`` is the URL relative submodule URLs are resolved against (default ``url``).
    """
    check_url(url)
    if version is not None:
        check_version(version)
    root = cache_root(env) / "git"
    scratch = _new_scratch(root, env)
    tree = scratch / "tree"
    repo = root / "repos" / cache_name(url)
    used = [repo]  # the caches holding a worktree of this checkout
    try:
        with _locked(repo):
            created = _prepare(repo, env)
            try:
                if _needs_fetch(repo, version, env):
                    _fetch(url, repo, version, env, local_refs=local_refs)
            except SourceError:
                if created:  # a URL that never worked leaves no empty cache behind
                    shutil.rmtree(repo, ignore_errors=True)
                raise
            commit = _resolve(repo, version, url, env)
            branch = _branch(repo, version, commit, env)
            _add_worktree(repo, commit, tree, env)
        subs = _submodules(submodule_base or url, repo, commit, tree, env, "", 0, used)
    except BaseException:
        remove_checkout(scratch, tuple(used), env)
        raise
    return CleanCheckout(tree, scratch, commit, branch, tuple(subs), tuple(used))


def cached_commit(url: str, commit: str, env: Mapping[str, str]) -> bool:
    """Whether the clone cache of ``url`` holds ``commit`` (a full SHA): it runs offline."""
    repo = cache_root(env) / "git" / "repos" / cache_name(url)
    if not _FULL_SHA.match(commit) or not (repo / "HEAD").is_file():
        return False
    with _locked(repo):
        return _has_commit(repo, commit, env)


def remove_checkout(scratch: Path, repos: tuple[Path, ...], env: Mapping[str, str]) -> None:
    """Delete a checkout made by :func:`clean_checkout` and forget its worktrees."""
    shutil.rmtree(scratch, ignore_errors=True)
    for repo in dict.fromkeys(repos):
        with contextlib.suppress(SourceError), _locked(repo):
            run_git(["worktree", "prune"], env, git_dir=repo)


@contextlib.contextmanager
def _locked(repo: Path) -> Iterator[None]:
    repo.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{repo}.lock", "a+b") as handle:  # noqa: PTH123 - a lock file, never read
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def new_scratch(env: Mapping[str, str]) -> Path:
    """A private directory in the cache, removed by :func:`remove_checkout` (or swept later)."""
    return _new_scratch(cache_root(env) / "git", env)


def _new_scratch(root: Path, env: Mapping[str, str]) -> Path:
    """A private directory for one checkout; leftovers of dead reprun processes are swept."""
    checkouts = root / "checkouts"
    checkouts.mkdir(parents=True, exist_ok=True)
    _sweep(checkouts, env)
    scratch = Path(tempfile.mkdtemp(prefix="co-", dir=checkouts))
    pid = os.getpid()
    (scratch / "owner").write_text(f"{pid} {process_start_ticks(pid) or ''}\n")
    return scratch


def _sweep(checkouts: Path, env: Mapping[str, str]) -> None:
    swept = False
    for scratch in checkouts.iterdir():
        try:
            pid_text, _, ticks = (scratch / "owner").read_text().strip().partition(" ")
            pid, start = int(pid_text), int(ticks) if ticks else None
        except (OSError, ValueError):
            continue
        if not process_alive(pid, start):
            shutil.rmtree(scratch, ignore_errors=True)
            swept = True
    if swept:
        for repo in (checkouts.parent / "repos").glob("*"):
            if repo.is_dir():
                with _locked(repo):
                    run_git(["worktree", "prune"], env, git_dir=repo)


def _prepare(repo: Path, env: Mapping[str, str]) -> bool:
    """Create the bare repository of the cache unless it exists; True when it was created."""
    if (repo / "HEAD").is_file():
        return False
    done = run_git(["init", "-q", "--bare", str(repo)], env)
    if not done.ok:
        raise SourceError(f"cannot create the git cache {repo}: {last_line(done.stderr)}")
    # housekeeping runs in the foreground, under our lock, never behind a finished run
    run_git(["config", "gc.autoDetach", "false"], env, git_dir=repo)
    return True


def _git(repo: Path, env: Mapping[str, str], *args: str) -> str | None:
    return git_output(args, env, git_dir=repo)


def _has_ref(repo: Path, ref: str, env: Mapping[str, str]) -> bool:
    return run_git(["show-ref", "--verify", "-q", ref], env, git_dir=repo).ok


def _has_commit(repo: Path, sha: str, env: Mapping[str, str]) -> bool:
    return run_git(["cat-file", "-e", f"{sha}^{{commit}}"], env, git_dir=repo).ok


def _needs_fetch(repo: Path, version: str | None, env: Mapping[str, str]) -> bool:
    """Whether the cache must ask the remote: no for a known tag or commit, yes for branches."""
    if version is None or _names_head(version):
        return True
    if _FULL_SHA.match(version):
        return not _has_commit(repo, version, env)
    if _has_ref(repo, f"refs/tags/{version}", env):
        return False
    if _has_ref(repo, f"refs/heads/{version}", env):
        return True
    if _HEX.match(version):
        return _resolve_quiet(repo, version, env) is None
    return True


def _fetch(url: str, repo: Path, version: str | None, env: Mapping[str, str], *,
           local_refs: bool) -> None:
    specs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
    if local_refs:
        specs.append("+refs/remotes/*:refs/remotes/*")
    if version is None or _names_head(version):
        specs.append(f"+HEAD:{HEAD_REF}")
    where, fetch_env = transport(url, env)
    done = run_git(["fetch", "-q", "--prune", "--no-write-fetch-head", "--no-tags",
                    "--end-of-options", where, *specs], fetch_env, git_dir=repo,
                   timeout=FETCH_TIMEOUT_S)
    if not done.ok:
        raise fetch_error(url, done.stderr)
    if version and _FULL_SHA.match(version) and not _has_commit(repo, version, env):
        # A commit no branch or tag reaches: servers that allow it send it when asked by SHA.
        run_git(["fetch", "-q", "--no-write-fetch-head", "--no-tags", "--end-of-options", where,
                 version],
                fetch_env, git_dir=repo, timeout=FETCH_TIMEOUT_S)


def _names_head(version: str) -> bool:
    """``HEAD``, ``HEAD~2``, ``HEAD^``: relative to the remote's default branch."""
    return version == "HEAD" or version.startswith(("HEAD~", "HEAD^"))


def _resolve_quiet(repo: Path, rev: str, env: Mapping[str, str]) -> str | None:
    if _names_head(rev):
        rev = HEAD_REF + rev[len("HEAD"):]
    return _git(repo, env, "rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}")


def _resolve(repo: Path, version: str | None, url: str, env: Mapping[str, str]) -> str:
    """The full commit SHA ``version`` names in the cache (the remote's HEAD when None)."""
    shown = redact_url(url)
    if version is None:
        commit = _resolve_quiet(repo, HEAD_REF, env)
        if commit is None:
            raise SourceError(f"'{shown}' has no default branch (an empty repository?)",
                              hint="give --version")
        return commit
    commit = _resolve_quiet(repo, version, env)
    if commit is not None:
        return commit
    if _HEX.match(version):
        matches = (_git(repo, env, "rev-parse", "--disambiguate=" + version.lower()) or "").split()
        if len(matches) > 1:
            raise ProjectNotFoundError(
                f"revision '{version}' is ambiguous in '{shown}' ({len(matches)} objects "
                "start with it)", hint="give more characters of the commit SHA",
            )
    raise ProjectNotFoundError(
        f"revision '{version}' not found in '{shown}'",
        hint="give a branch, a tag or a commit SHA of that repository",
    )


def _branch(repo: Path, version: str | None, commit: str, env: Mapping[str, str]) -> str | None:
    """The branch the commit was taken from: ``version`` if it names one, else the default one."""
    if version is not None:
        if _has_ref(repo, f"refs/tags/{version}", env):
            return None
        return version if _has_ref(repo, f"refs/heads/{version}", env) else None
    heads = _git(repo, env, "for-each-ref", "--points-at", commit, "--format=%(refname:short)",
                 "refs/heads/") or ""
    names = heads.split()
    return names[0] if len(names) == 1 else None


def _add_worktree(repo: Path, commit: str, dest: Path, env: Mapping[str, str]) -> None:
    # no hooks (run_git turns them off): a checkout runs nothing but the project's own command
    done = run_git(["worktree", "add", "-q", "--detach", "--end-of-options", str(dest), commit],
                   env, git_dir=repo)
    if not done.ok:
        raise SourceError(f"cannot check out commit {commit[:12]}: {last_line(done.stderr)}")


@frozen
class _Gitlink:
    path: str
    commit: str
    url: str


def _gitlinks(repo: Path, commit: str, url: str, env: Mapping[str, str]) -> list[_Gitlink]:
    """The submodules of ``commit``: path, recorded commit and URL from its ``.gitmodules``."""
    if not run_git(["cat-file", "-e", f"{commit}:.gitmodules"], env, git_dir=repo).ok:
        return []
    listing = run_git(["ls-tree", "-r", "-z", commit], env, git_dir=repo)
    links: dict[str, str] = {}
    for entry in listing.stdout.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[0] == "160000":
            links[path] = fields[2]
    if not links:
        return []
    config = run_git(["config", "--blob", f"{commit}:.gitmodules", "-z", "--get-regexp",
                      r"^submodule\..*\.(path|url)$"], env, git_dir=repo).stdout
    paths: dict[str, str] = {}
    urls: dict[str, str] = {}
    for item in filter(None, config.split("\0")):
        key, _, value = item.partition("\n")
        name, _, field = key.removeprefix("submodule.").rpartition(".")
        (paths if field == "path" else urls)[name] = value
    by_path = {path: urls.get(name, "") for name, path in paths.items()}
    result = []
    for path, sha in sorted(links.items()):
        sub_url = by_path.get(path, "")
        if not sub_url:
            raise SourceError(
                f"submodule '{path}' of '{redact_url(url)}' at {commit[:12]} has no URL in "
                ".gitmodules", hint="fix .gitmodules in that commit",
            )
        result.append(_Gitlink(path, sha, sub_url))
    return result


def _submodules(
    url: str, repo: Path, commit: str, tree: Path, env: Mapping[str, str], prefix: str, depth: int,
    used: list[Path],
) -> list[SubmoduleInfo]:
    """Check out every submodule of ``commit`` into ``tree``, recursively, at recorded commits.

    Each cache that gets a worktree is added to ``used``.
    """
    infos: list[SubmoduleInfo] = []
    for link in _gitlinks(repo, commit, url, env):
        if depth >= MAX_SUBMODULE_DEPTH:
            raise SourceError(f"submodules of '{redact_url(url)}' nest deeper than "
                              f"{MAX_SUBMODULE_DEPTH} levels")
        sub_url = check_url(join_url(url, link.url), f"the URL of submodule '{prefix}{link.path}'")
        sub_repo = _submodule_checkout(sub_url, link.commit, tree / link.path, env,
                                       prefix + link.path)
        used.append(sub_repo)
        infos.append(SubmoduleInfo(path=prefix + link.path, commit=link.commit,
                                   url=redact_url(sub_url)))
        infos += _submodules(sub_url, sub_repo, link.commit, tree / link.path, env,
                             f"{prefix}{link.path}/", depth + 1, used)
    return infos


def _submodule_checkout(url: str, commit: str, dest: Path, env: Mapping[str, str],
                        path: str) -> Path:
    """Fetch ``commit`` of the submodule at ``url`` if the cache lacks it; check it out at dest."""
    repo = cache_root(env) / "git" / "repos" / cache_name(url)
    with _locked(repo):
        _prepare(repo, env)
        if not _has_commit(repo, commit, env):
            _fetch(url, repo, commit, env, local_refs=False)
        if not _has_commit(repo, commit, env):
            raise ProjectNotFoundError(
                f"submodule '{path}': commit {commit} not found in '{redact_url(url)}'",
                hint="push that commit to the submodule's repository",
            )
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        _add_worktree(repo, commit, dest, env)
    return repo
