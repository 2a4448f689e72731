"""The source of a recorded run, made again: never the user's working copy.

- A git run: a fresh checkout of the recorded commit (submodules at the commits it records) of the
  recorded repository, the recorded subdirectory, and the recorded patch applied. A run of a local
  directory is checked out from that local repository if it is still here, else from its recorded
  remote; a run of a URL from that URL (credentials come from git, as for ``reprun run``).
- A project outside git: its snapshot, unpacked after its sha256 is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runner.errors import SourceError
from runner.fsutil import sha256_bytes
from runner.record.export import Recorded
from runner.record.types import RunRecord
from runner.source.checkout import Checkout, first_remote_raw, project_dir_in
from runner.source.fetch import cached_commit, clean_checkout, new_scratch, remove_checkout
from runner.source.git import git_env, git_output, last_line, run_git
from runner.source.snapshot import extract_snapshot
from runner.source.uri import file_url_path, is_remote


def checkout_recorded(rec: Recorded, base_env: Mapping[str, str]) -> Checkout:
    """A directory holding exactly the source the recorded run ran."""
    record = rec.record
    src = record.source
    if src.snapshot is not None:
        return _from_snapshot(rec, base_env)
    if src.resolved_commit is None and src.snapshot_skipped:
        raise SourceError(f"run {record.run_id[:12]} kept no snapshot: {src.snapshot_skipped}",
                          hint="such a run cannot be reproduced from its record")
    if src.resolved_commit is None:
        raise SourceError(
            f"run {record.run_id[:12]} recorded neither a git commit nor a snapshot of "
            f"'{src.uri or record.project.uri}', so its source cannot be made again",
            hint="only runs recorded by a reprun that keeps snapshots can be reproduced",
        )
    env = git_env(base_env)
    url, local, submodule_base = _repository(record, env)
    made = clean_checkout(url, src.resolved_commit, env, local_refs=local,
                          submodule_base=submodule_base)
    try:
        directory = project_dir_in(made, src.subdirectory, url, env)
        patch = _apply_patch(rec, made.tree, env)
    except BaseException:
        remove_checkout(made.scratch, made.repos, env)
        raise
    facts = src.model_copy(update={
        "checkout": "clean", "submodules": list(made.submodules), "git_dirty": bool(patch),
        "patch_file": None, "patch_sha256": None,
    })
    return Checkout(record.project.uri, directory, facts, patch, made.scratch, made.repos)


def _repository(record: RunRecord, env: Mapping[str, str]) -> tuple[str, bool, str | None]:
    """(URL or path to fetch from, whether it is a local repository, base of submodule URLs)."""
    src = record.source
    uri = src.uri or ""
    if uri and is_remote(uri):
        return uri, False, None
    if uri:
        path = file_url_path(uri) if uri.startswith("file://") else Path(uri)
        if path.is_dir() and git_output(["rev-parse", "--git-dir"], env, cwd=path) is not None:
            local = not uri.startswith("file://")
            base = (first_remote_raw(path, env) or src.git_remote) if local else None
            return uri, local, base
        if src.resolved_commit and cached_commit(uri, src.resolved_commit, env):
            return uri, False, src.git_remote  # the repository is gone; the cache holds it
    if src.git_remote:
        return src.git_remote, False, None
    raise SourceError(
        f"the repository '{uri}' of run {record.run_id[:12]} is not on this machine and the run "
        f"recorded no remote to fetch commit {src.resolved_commit} from",
        hint="copy the repository to that path, or push the commit and run from a clone with "
             "that remote",
    )


def _apply_patch(rec: Recorded, tree: Path, env: Mapping[str, str]) -> bytes | None:
    src = rec.record.source
    if not src.patch_file:
        return None
    path = rec.directory / src.patch_file
    if not path.is_file():
        raise SourceError(f"the patch '{path}' named by run {rec.record.run_id[:12]} is missing",
                          hint="reproduce from the run's store or from its exported file")
    data = path.read_bytes()
    if src.patch_sha256 and sha256_bytes(data) != src.patch_sha256:
        raise SourceError(f"the patch '{path}' does not match its sha256 in the record",
                          hint="the file was changed; reproduce from an untouched export")
    done = run_git(["apply", "--binary", "--whitespace=nowarn", str(path)], env, cwd=tree)
    if not done.ok:
        raise SourceError(
            f"the recorded patch '{path}' does not apply to commit {src.resolved_commit}: "
            f"{last_line(done.stderr)}")
    return data


def _from_snapshot(rec: Recorded, base_env: Mapping[str, str]) -> Checkout:
    record = rec.record
    snapshot = record.source.snapshot
    assert snapshot is not None
    scratch = new_scratch(base_env)
    # the original directory's name, so a project without a `name` keeps its name
    name = Path(record.project.path).name
    tree = scratch / (name if name not in ("", ".", "..") else "project")
    archive = rec.directory / snapshot.file
    try:
        extract_snapshot(archive, snapshot.sha256, tree)
    except BaseException:
        remove_checkout(scratch, (), base_env)
        raise
    facts = record.source.model_copy(update={"checkout": "snapshot"})
    return Checkout(record.project.uri, tree, facts, None, scratch, (), archive)
