"""A content snapshot of a project directory that is no git repository.

The snapshot is a gzipped tar beside the record (``source.tar.gz``), byte-identical for identical
content (sorted entries, times and owners zeroed), so its sha256 names the content. It leaves out
what `.gitignore`-style rules exclude: built-in rules for caches, virtualenvs and VCS directories,
then the project's own ``.gitignore`` and ``.reprunignore`` (root files only), and files larger than
:data:`MAX_FILE_BYTES`. What was left out is listed in the record.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from runner.errors import SourceError
from runner.frozen import frozen
from runner.fsutil import sha256_file
from runner.record.types import SnapshotInfo

SNAPSHOT_FILE = "source.tar.gz"
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # more is data, not code: it should not be copied every run
MAX_LISTED = 200
IGNORE_FILES = (".gitignore", ".reprunignore")
DEFAULT_RULES = (
    ".git/", ".hg/", ".svn/", "__pycache__/", "*.py[cod]", ".venv/", "venv/", ".tox/", ".nox/",
    ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".ipynb_checkpoints/", "node_modules/",
    ".DS_Store", "mlruns/", "mlartifacts/", "mlflow.db",
)


@frozen
class Rule:
    """One gitignore-style line: ``!`` re-includes, a trailing ``/`` matches directories only."""

    text: str
    negate: bool
    dir_only: bool
    regex: re.Pattern[str]


def parse_rules(lines: Iterable[str]) -> list[Rule]:
    rules = []
    for raw in lines:
        line = raw.rstrip("\n").rstrip()
        if not line or line.startswith("#"):
            continue
        text, negate = (line[1:], True) if line.startswith("!") else (line, False)
        dir_only = text.endswith("/")
        body = text.rstrip("/")
        if not body:
            continue
        anchored = "/" in body
        pattern = _translate(body.lstrip("/"))
        regex = re.compile(pattern if anchored else f"(?:.*/)?{pattern}")
        rules.append(Rule(line, negate, dir_only, regex))
    return rules


def _translate(pattern: str) -> str:
    """gitignore glob -> regex: ``*`` and ``?`` stay in one path segment, ``**`` crosses them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def is_excluded(rules: list[Rule], rel: str, is_dir: bool) -> bool:
    """Whether the last rule matching ``rel`` (a POSIX path relative to the root) excludes it."""
    excluded = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.regex.fullmatch(rel):
            excluded = not rule.negate
    return excluded


def project_rules(directory: Path) -> list[str]:
    """The rule lines for ``directory``: built-in ones, then its .gitignore and .reprunignore."""
    lines = list(DEFAULT_RULES)
    for name in IGNORE_FILES:
        path = directory / name
        if path.is_file():
            lines += [ln.rstrip() for ln in path.read_text(errors="replace").splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


def walk(directory: Path, rules: list[Rule]) -> tuple[list[str], list[str]]:
    """(included paths, excluded paths) under ``directory``, sorted; directories end with '/'."""
    included: list[str] = []
    excluded: list[str] = []
    for top, dirs, files in os.walk(directory):
        base = Path(top).relative_to(directory).as_posix()
        prefix = "" if base == "." else base + "/"
        kept = []
        for name in sorted(dirs):
            rel = prefix + name
            if os.path.islink(os.path.join(top, name)):  # noqa: PTH118,PTH114 - hot loop
                (excluded if is_excluded(rules, rel, False) else included).append(rel)
            elif is_excluded(rules, rel, True):
                excluded.append(rel + "/")
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            rel = prefix + name
            path = Path(top, name)
            too_big = not path.is_symlink() and path.stat().st_size > MAX_FILE_BYTES
            (excluded if too_big or is_excluded(rules, rel, False) else included).append(rel)
    return sorted(included), sorted(excluded)


class SnapshotTooLarge(Exception):
    """The files to keep add up to more than MAX_TOTAL_BYTES."""

    def __init__(self, size: int, files: int) -> None:
        super().__init__(
            f"the project holds {size / 2**20:.0f} MiB in {files} files outside git, more than "
            f"the {MAX_TOTAL_BYTES // 2**20} MiB a snapshot keeps with every run; list data "
            "folders in .reprunignore (and pass them as path parameters), or make the project "
            "a git repository"
        )


def make_snapshot(directory: Path, archive: Path,
                  leave_out: Callable[[Sequence[str]], Collection[str]] | None = None
                  ) -> SnapshotInfo:
    """Write the snapshot of ``directory`` to ``archive`` and describe it; ``leave_out`` names
    the files of those it is given to keep out too (the outputs of runs).

    Raises SnapshotTooLarge, before writing anything, when the files add up to too much.
    """
    lines = project_rules(directory)
    included, excluded = walk(directory, parse_rules(lines))
    if leave_out is not None and (products := set(leave_out(included))):
        included = [rel for rel in included if rel not in products]
        excluded = sorted([*excluded, *products])
    total = sum(p.stat().st_size for rel in included
                if (p := directory / rel).is_file() and not p.is_symlink())
    if total > MAX_TOTAL_BYTES:
        raise SnapshotTooLarge(total, len(included))
    size = 0
    with archive.open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in included:
            info = tar.gettarinfo(str(directory / rel), arcname=rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.pax_headers = {}
            if info.isfile():
                size += info.size
                with (directory / rel).open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return SnapshotInfo(
        file=archive.name, sha256=sha256_file(archive), files=len(included), size=size,
        rules=lines, excluded=excluded[:MAX_LISTED], excluded_count=len(excluded),
    )


def _safe_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        bad_name = member.name.startswith("/") or ".." in parts
        bad_link = member.issym() and (member.linkname.startswith("/")
                                       or ".." in PurePosixPath(member.linkname).parts)
        if bad_name or bad_link or not (member.isfile() or member.isdir() or member.issym()):
            raise SourceError(f"snapshot {archive} holds an unsafe entry '{member.name}'",
                              hint="the archive was not written by reprun; re-export the run")
        yield member


def extract_snapshot(archive: Path, sha256: str, dest: Path) -> None:
    """Unpack a snapshot into ``dest`` after checking its sha256 against the record."""
    if not archive.is_file():
        raise SourceError(f"the snapshot '{archive}' named by the record is missing",
                          hint="reproduce from the run's store or from its exported file")
    found = sha256_file(archive)
    if found != sha256:
        raise SourceError(f"snapshot '{archive}' has sha256 {found[:12]}..., the record says "
                          f"{sha256[:12]}...", hint="the file was changed; re-export the run")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in _safe_members(tar, archive):
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, dest, set_attrs=member.isfile(), filter="data")
                else:  # pragma: no cover - Python before 3.10.12 / 3.11.4
                    tar.extract(member, dest, set_attrs=member.isfile())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _damaged(archive, exc) from None


def _damaged(archive: Path, exc: BaseException) -> SourceError:
    why = " ".join(str(exc).split()) or type(exc).__name__
    return SourceError(f"the snapshot '{archive}' cannot be unpacked ({why})",
                       hint="the archive was not written by reprun; re-export the run")


def snapshot_digests(archive: Path) -> dict[str, str]:
    """Path -> sha256 of each file in a snapshot (for ``reprun diff``)."""
    digests: dict[str, str] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    digests[member.name] = hashlib.sha256(handle.read()).hexdigest()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _damaged(archive, exc) from None
    return digests
