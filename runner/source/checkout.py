"""Where the project comes from, and the git facts of that place.

- A local directory is run in place. If it is inside a git repository, its commit, branch, first
  remote (credentials removed) and dirty state are recorded, and the uncommitted changes (staged,
  unstaged and untracked files that git does not ignore) are kept as a binary patch against HEAD.
- A git URL (https, ssh, ``git@host:org/repo``, or ``file://`` naming a repository), or a local
  repository with ``--version``, is run from a clean checkout of the exact commit made for this run
  from the cache of bare clones (:mod:`runner.source.fetch`); the user's own checkout is never
  touched.
- ``URI#sub/dir`` selects a subdirectory of the repository (it must stay inside it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import ProjectNotFoundError, SourceError, UsageError
from runner.frozen import frozen
from runner.record.types import SourceInfo, SubmoduleInfo
from runner.redact import redact_url
from runner.source.git import config_listing, git_env, git_output, run_git
from runner.source.uri import ProjectUri, file_url_path, is_remote, is_scp_like, parse_uri

if TYPE_CHECKING:  # the clone cache is imported only for URLs and --version
    from runner.source.fetch import CleanCheckout

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbc4904"


@frozen
class Checkout:
    """A project directory ready to run, and what is known about its origin.

    ``scratch`` is set when reprun made a clean checkout for this run: :func:`release` removes it.
    ``snapshot`` is the archive a reproduction was unpacked from (kept with the new record too).
    """

    uri: str
    directory: Path
    facts: SourceInfo
    patch: bytes | None = None
    scratch: Path | None = None
    repos: tuple[Path, ...] = ()
    snapshot: Path | None = None


def shown_in_source(checkout: Checkout, path: Path) -> tuple[str | None, str]:
    """A file of a checkout reprun made (a project from a URL) as the repository names it
    (``examples/docker/MLproject``) and the URL; (None, "") for the user's own directory."""
    if checkout.scratch is None:
        return None, ""
    try:
        relative = path.relative_to(checkout.directory).as_posix()
    except ValueError:
        return None, ""
    sub = checkout.facts.subdirectory
    return (f"{sub.strip('/')}/{relative}" if sub else relative), checkout.facts.uri or ""


def resolve_source(
    uri: str, cwd: Path, env: Mapping[str, str], version: str | None = None
) -> Checkout:
    """Find (or fetch and check out) the project ``uri`` names at ``version``, with git facts."""
    parsed = parse_uri(uri)
    if version is not None:
        from runner.source.fetch import check_version

        check_version(version)
    base = parsed.base
    genv = git_env(env)
    if is_remote(base) and not (is_scp_like(base) and _local_path(base, cwd).exists()):
        return _from_url(parsed, base, version, genv)
    if base.startswith("file://"):
        path = file_url_path(base)
        if not path.exists() and version is not None:
            return _from_url(parsed, base, version, genv)  # the clone cache may hold it
        if not path.exists():
            raise ProjectNotFoundError(f"'{parsed.shown}' names '{path}', which does not exist",
                                       hint="check the path (a typo?)")
        if _is_repository_root(path, genv):
            return _from_url(parsed, base, version, genv)
    else:
        path = _local_path(base, cwd)
    if not path.exists():
        raise ProjectNotFoundError(f"project directory '{base}' does not exist",
                                   hint=_missing_hint(base))
    if not path.is_dir():
        raise ProjectNotFoundError(
            f"'{base}' is a file, not a project directory",
            hint="pass the directory that holds the project (and -e FILE for a script)",
        )
    if version is not None:
        return _local_revision(parsed, path.resolve(), version, genv)
    return _in_place(parsed, path.resolve(), genv)


def release(checkout: Checkout, env: Mapping[str, str]) -> None:
    """Remove the clean checkout made for a run (nothing to do for a directory run in place)."""
    if checkout.scratch is not None:
        from runner.source.fetch import remove_checkout

        remove_checkout(checkout.scratch, checkout.repos, git_env(env))


def _local_path(base: str, cwd: Path) -> Path:
    path = Path(base).expanduser()
    return path if path.is_absolute() else cwd / path


def _missing_hint(base: str) -> str:
    first = base.split("/", 1)[0]
    if "." in first.strip(".") and "/" in base and not base.startswith("."):
        return f"for a git repository, write its URL, e.g. 'https://{base}'"
    return "check the path (a typo?)"


def _is_repository_root(path: Path, env: Mapping[str, str]) -> bool:
    if not path.is_dir():
        return False
    if git_output(["rev-parse", "--is-bare-repository"], env, cwd=path) == "true":
        return True
    top = git_output(["rev-parse", "--show-toplevel"], env, cwd=path)
    return top is not None and Path(top).resolve() == path.resolve()


def _from_url(parsed: ProjectUri, url: str, version: str | None, env: Mapping[str, str],
              *, prefix: str | None = None, remote: str | None = None,
              requested: str | None = None, branch: str | None = None) -> Checkout:
    """A clean checkout of ``version`` of the repository at ``url``.

    For a local repository (``prefix`` set: the project's directory in it) ``version`` is the
    commit already resolved there, ``requested`` what the user gave and ``branch`` its branch.
    """
    local = prefix is not None
    from runner.source.fetch import clean_checkout

    made = clean_checkout(url, version, env, local_refs=local, submodule_base=remote)
    sub = "/".join(p for p in (prefix, parsed.subdirectory) if p) or None
    directory = project_dir_in(made, sub, url, env)
    facts = SourceInfo(
        uri=redact_url(url), requested_version=requested if local else version,
        resolved_commit=made.commit, subdirectory=sub, checkout="clean",
        submodules=list(made.submodules), git_commit=made.commit,
        git_branch=branch if local else made.branch,
        git_remote=redact_url(remote) if remote else (None if local else redact_url(url)),
        git_dirty=False,
    )
    return Checkout(parsed.shown, directory, facts, None, made.scratch, made.repos)


def project_dir_in(made: CleanCheckout, sub: str | None, url: str,
                   env: Mapping[str, str]) -> Path:
    """The project directory of a checkout; it must exist and stay inside the repository."""
    if sub is None:
        return made.tree
    directory = (made.tree / sub).resolve()
    if not directory.is_relative_to(made.tree.resolve()) or not directory.is_dir():
        why = "does not exist" if not directory.exists() else "leaves the repository"
        from runner.source.fetch import remove_checkout

        remove_checkout(made.scratch, made.repos, env)
        raise ProjectNotFoundError(
            f"subdirectory '{sub}' {why} in '{redact_url(url)}' at commit {made.commit[:12]}",
            hint="check the part after '#' (and --version)",
        )
    return directory


def _local_revision(parsed: ProjectUri, path: Path, version: str,
                    env: Mapping[str, str]) -> Checkout:
    """``--version`` on a local repository: a clean checkout, the user's branch left alone."""
    top = git_output(["rev-parse", "--show-toplevel"], env, cwd=path)
    if top is None:
        raise UsageError(f"--version needs a git repository, and '{parsed.base}' is not in one",
                         hint="drop --version to run the directory as it is")
    root = Path(top).resolve()
    prefix = path.relative_to(root).as_posix() if path != root else ""
    # Resolved in the user's repository (read only), so HEAD~2 or origin/main mean what they
    # mean there; the commit is then fetched into the cache and checked out apart.
    commit = git_output(["rev-parse", "--verify", "-q", "--end-of-options",
                         f"{version}^{{commit}}"], env, cwd=root)
    if commit is None:
        raise ProjectNotFoundError(
            f"revision '{version}' not found in '{root}'",
            hint="give a branch, a tag or a commit SHA of that repository",
        )
    is_branch = run_git(["show-ref", "--verify", "-q", f"refs/heads/{version}"], env, cwd=root).ok
    return _from_url(parsed, str(root), commit, env, prefix=prefix,
                     remote=first_remote_raw(root, env), requested=version,
                     branch=version if is_branch else None)


def _in_place(parsed: ProjectUri, path: Path, env: Mapping[str, str]) -> Checkout:
    directory = path / parsed.subdirectory if parsed.subdirectory else path
    if not directory.resolve().is_relative_to(path) or not directory.is_dir():
        raise ProjectNotFoundError(
            f"subdirectory '{parsed.subdirectory}' does not exist in '{parsed.base}'",
            hint="check the part after '#'",
        )
    directory = directory.resolve()
    try:
        facts, patch = git_facts(directory, env)
    except SourceError:  # no git on this machine: a plain directory runs all the same
        facts, patch = SourceInfo(uri=str(directory), checkout="in-place"), None
    return Checkout(parsed.shown, directory, facts, patch)


def git_facts(directory: Path, base_env: Mapping[str, str]) -> tuple[SourceInfo, bytes | None]:
    """Commit, branch, remote and uncommitted patch of the repository holding ``directory``."""
    env = git_env(base_env)
    found = _repository_facts(directory, env)
    if found is None:
        return SourceInfo(uri=str(directory), checkout="in-place"), None
    root, index, commit, branch = found
    patch, left_out = uncommitted_patch(root, env, commit, index)
    remote = first_remote_raw(directory, env)
    sub = directory.relative_to(root).as_posix() if directory != root else None
    info = SourceInfo(
        uri=str(root), resolved_commit=commit, subdirectory=sub, checkout="in-place",
        submodules=_checked_out_submodules(root, env),
        git_commit=commit, git_branch=branch or None,
        git_remote=redact_url(remote) if remote else None, git_dirty=bool(patch),
        left_out=left_out,
    )
    return info, patch or None


def _repository_facts(
    directory: Path, env: Mapping[str, str]
) -> tuple[Path, Path | None, str | None, str | None] | None:
    """Top level, index file, HEAD commit and branch of the repository holding ``directory``,
    in one git call (two for a repository without commits); None outside a repository."""
    out = git_output(["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-path",
                      "index", "HEAD", "--symbolic-full-name", "HEAD"], env, cwd=directory)
    if out is not None and len(lines := out.splitlines()) == 4:
        top, index, commit, ref = lines
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        return Path(top).resolve(), Path(index), commit, branch
    unborn_top = git_output(["rev-parse", "--show-toplevel"], env, cwd=directory)
    if unborn_top is None:
        return None
    unborn = git_output(["symbolic-ref", "--short", "-q", "HEAD"], env, cwd=directory)
    return Path(unborn_top).resolve(), None, None, unborn or None


def first_remote_raw(directory: Path, env: Mapping[str, str]) -> str | None:
    """The URL of ``origin``, else of the first remote configured (from the configuration
    listing git gave for the repository, which neutralising its keys asked for anyway)."""
    urls: dict[str, str] = {}
    for _scope, key, value in config_listing(directory, env):
        if key.startswith("remote.") and key.endswith(".url") and len(key) > len("remote..u"):
            urls[key] = value  # as 'git config --get-regexp ^remote\..*\.url$' lists them
    first: str | None = next(iter(urls.values()), None)
    return urls.get("remote.origin.url") or first


def _checked_out_submodules(root: Path, env: Mapping[str, str]) -> list[SubmoduleInfo]:
    """Path and checked-out commit of each initialised submodule of a working tree."""
    if not (root / ".gitmodules").is_file():
        return []
    done = run_git(["submodule", "status", "--recursive"], env, cwd=root)
    infos = []
    for line in done.stdout.splitlines() if done.ok else []:
        if len(line) < 42 or line[0] == "-":
            continue
        sha, _, rest = line[1:].partition(" ")
        infos.append(SubmoduleInfo(path=rest.rsplit(" (", 1)[0], commit=sha))
    return infos


# MLflow's own files: what a run writes, not a change to the code (never in a patch).
MLFLOW_FILES = (":(glob)**/mlflow.db", ":(glob)**/mlruns/**", ":(glob)**/mlartifacts/**")
MAX_LEFT_OUT = 200


def uncommitted_patch(
    top: Path, env: Mapping[str, str], commit: str | None, index: Path | None = None
) -> tuple[bytes, list[str]]:
    """Every change against HEAD, untracked files included, without touching the user's index;
    and the changed files left out of it (MLflow's own files)."""
    if index is None:
        found = git_output(["rev-parse", "--path-format=absolute", "--git-path", "index"], env,
                           cwd=top)
        index = Path(found) if found else None
    with tempfile.TemporaryDirectory(prefix="reprun-index-") as tmp:
        temp_index = Path(tmp) / "index"
        if index is not None and index.is_file():
            shutil.copy2(index, temp_index)  # its mtime too: git then sees racily-clean files
        scratch = {**env, "GIT_INDEX_FILE": str(temp_index)}
        excluded = [f":(exclude,{spec[2:]}" for spec in MLFLOW_FILES]
        if not run_git(["add", "-A", "--", ".", *excluded], scratch, cwd=top).ok:
            return b"", []
        done = run_git(["diff", "--cached", "--binary", "--no-color", "--no-ext-diff",
                        "--no-textconv", "--end-of-options", commit or EMPTY_TREE], scratch,
                       cwd=top)
        status = run_git(["status", "--porcelain", "-z", "--untracked-files=all", "--",
                          *MLFLOW_FILES], scratch, cwd=top)
    left_out = [entry[3:] for entry in status.stdout.split("\0") if len(entry) > 3] \
        if status.ok else []
    return (done.out if done.ok else b""), left_out[:MAX_LEFT_OUT]
