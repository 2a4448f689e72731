"""Where the project comes from, and the git facts of that place.

A local directory is run in place. If it is inside a git repository, its commit, branch, first
remote (credentials removed) and dirty state are recorded, and the uncommitted changes (staged,
unstaged and untracked files that git does not ignore) are kept as a binary patch against HEAD.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import NotSupportedError, ProjectNotFoundError
from runner.process import capture
from runner.record import SourceInfo
from runner.redact import redact_url

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbc4904"
_REMOTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://|[^/@:]+@[^/:]+:)")


@dataclass(frozen=True)
class Checkout:
    """A project directory ready to run, and what is known about its origin."""

    uri: str
    directory: Path
    facts: SourceInfo
    patch: bytes | None = None


def resolve_source(uri: str, cwd: Path, env: Mapping[str, str]) -> Checkout:
    """Find the project named by ``uri`` (a local directory for now) and read its git facts."""
    if _REMOTE.match(uri) and not uri.startswith("file://"):
        raise NotSupportedError(
            f"'{redact_url(uri)}' is a remote URL; running projects from git URLs is not yet "
            "supported", hint="clone it and pass the local directory",
        )
    local = uri.removeprefix("file://") if uri.startswith("file://") else uri
    path = Path(local).expanduser()
    if not path.is_absolute():
        path = cwd / path
    if not path.exists():
        raise ProjectNotFoundError(
            f"project directory '{uri}' does not exist", hint="check the path (a typo?)"
        )
    if not path.is_dir():
        raise ProjectNotFoundError(
            f"'{uri}' is a file, not a project directory",
            hint="pass the directory that holds the project (and -e FILE for a script)",
        )
    directory = path.resolve()
    facts, patch = git_facts(directory, env)
    return Checkout(redact_url(uri), directory, facts, patch)


def _git(directory: Path, env: Mapping[str, str], *args: str) -> str | None:
    try:
        done = capture(["git", "-C", str(directory), *args], env=env, timeout=120)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.ok else None


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update({"LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"})
    return env


def git_facts(directory: Path, base_env: Mapping[str, str]) -> tuple[SourceInfo, bytes | None]:
    """Commit, branch, remote and uncommitted patch of the repository holding ``directory``."""
    env = git_env(base_env)
    top = _git(directory, env, "rev-parse", "--show-toplevel")
    if top is None:
        return SourceInfo(), None
    commit = _git(directory, env, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(directory, env, "symbolic-ref", "--short", "-q", "HEAD")
    patch = uncommitted_patch(Path(top), env, commit)
    info = SourceInfo(
        git_commit=commit,
        git_branch=branch or None,
        git_remote=_first_remote(directory, env),
        git_dirty=bool(patch),
    )
    return info, patch or None


def _first_remote(directory: Path, env: Mapping[str, str]) -> str | None:
    names = (_git(directory, env, "remote") or "").split()
    if not names:
        return None
    name = "origin" if "origin" in names else names[0]
    url = _git(directory, env, "remote", "get-url", name)
    return redact_url(url) if url else None


def uncommitted_patch(top: Path, env: Mapping[str, str], commit: str | None) -> bytes:
    """Every change against HEAD, untracked files included, without touching the user's index."""
    index = _git(top, env, "rev-parse", "--path-format=absolute", "--git-path", "index")
    with tempfile.TemporaryDirectory(prefix="reprun-index-") as tmp:
        temp_index = Path(tmp) / "index"
        if index and Path(index).is_file():
            temp_index.write_bytes(Path(index).read_bytes())
        scratch = {**env, "GIT_INDEX_FILE": str(temp_index)}
        if _git(top, scratch, "add", "-A", "--", ".") is None:
            return b""
        try:
            done = capture(
                ["git", "-C", str(top), "diff", "--cached", "--binary", "--no-color",
                 "--no-ext-diff", commit or EMPTY_TREE],
                env=scratch, timeout=300,
            )
        except FileNotFoundError:
            return b""
    return done.out if done.ok else b""
