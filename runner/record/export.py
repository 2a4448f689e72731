"""A run as one portable file, and reading a run back from the store or from such a file.

The export is a gzipped tar (``reprun-<run id>.tar.gz``) holding, at its root:

- ``manifest.json``: ``{"format": "reprun-export", "version": 1, "run_id": ..., "files":
  {name: sha256}}``, checked when the file is read;
- ``run.json``: the record;
- what the record names beside it: the environment's lock file, ``source.patch``,
  ``source.tar.gz`` (the snapshot of a project outside git), ``output.log``, ``metrics.jsonl``
  (every metric value reported) and ``spec/`` (copies of the MLproject and environment files).

Outputs are not included: the record lists each with its size and sha256, which is what
``reprun reproduce --check`` compares.

An export, a ``run.json`` and even a record of the store are untrusted input: the whole archive
and manifest are checked before anything is unpacked (regular files only, plain relative names
that neither escape nor collide, every digest right), and a record's commits must be full SHAs
and the files it names plain names inside its directory (:func:`check_record`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.errors import RunNotFoundError, UsageError
from runner.frozen import frozen
from runner.fsutil import sha256_file
from runner.record.store import RECORD, RunStore
from runner.record.types import RunRecord

FORMAT = "reprun-export"
VERSION = 1
MANIFEST = "manifest.json"
MAX_RECORD_BYTES = 64 << 20
DEFAULT_MAX_UNPACKED_MB = 4096  # all the files of one export, unpacked (REPRUN_EXPORT_MAX_MB)
_FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@frozen
class Recorded:
    """A run's record and the directory holding the files it names (lock, patch, snapshot)."""

    record: RunRecord
    directory: Path
    origin: str


BACKEND_FILES = ("manifest_file", "job_template_file")


def bundled_files(record: RunRecord, directory: Path) -> list[str]:
    """The names, relative to the run's directory, of the files an export carries."""
    names = [RECORD, record.log_file, record.environment.lock_file, record.source.patch_file,
             record.source.snapshot.file if record.source.snapshot else None,
             record.metrics_file]
    # What a backend saved beside the record (the Job and its template, to reproduce it).
    names += [str(record.backend.facts.get(k) or "").replace("/", "") for k in BACKEND_FILES]
    found = [n for n in names if n and (directory / n).is_file()]
    found += sorted({i.manifest for i in record.inputs if i.manifest
                     and re.fullmatch(r"inputs/[0-9a-f]{32}\.json", i.manifest)
                     and (directory / i.manifest).is_file()})
    spec = directory / "spec"
    if spec.is_dir():
        found += [p.relative_to(directory).as_posix() for p in sorted(spec.iterdir())
                  if p.is_file()]
    return found


def export_run(store: RunStore, run_id: str, out: Path | None) -> Path:
    """Write the export of run ``run_id`` to ``out`` (default: reprun-<id>.tar.gz here)."""
    record = store.get(run_id)
    directory = store.run_dir(record.run_id)
    check_record(record, str(directory / RECORD))  # it names the files the export reads
    target = export_target(out, f"reprun-{record.run_id[:12]}.tar.gz")
    sources = {n: directory / n for n in bundled_files(record, directory)}
    for rid in step_runs(store, record):  # a pipeline run carries its steps' runs
        run_dir = store.run_dir(rid)
        check_record(store.get(rid), str(run_dir / RECORD))
        sources.update({f"runs/{rid}/{n}": run_dir / n
                        for n in bundled_files(store.get(rid), run_dir)})
    names = list(sources)
    manifest = {"format": FORMAT, "version": VERSION, "run_id": record.run_id,
                "files": {n: sha256_file(p) for n, p in sources.items()}}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    # written beside the target and renamed: an interrupted export leaves no partial file
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, data)
            for name in names:
                _add(tar, name, sources[name].read_bytes())
        Path(tmp).chmod(0o644 & ~_umask())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def step_runs(store: RunStore, record: RunRecord) -> list[str]:
    """The runs of a pipeline run's steps, and the runs whose outputs they reused."""
    found: list[str] = []
    for step in record.pipeline.steps if record.pipeline else []:
        rid = step.run_id
        while rid is not None and rid not in found:
            found.append(rid)
            rid = store.get(rid).reused_from
    return found


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_target(out: Path | None, default: str) -> Path:
    """Where ``-o`` asks the export to go: a file, or ``default`` inside a directory."""
    if out is None:
        return Path(default)
    if out.is_dir():
        return out / default
    if out.exists() and not out.is_file():
        raise UsageError(f"-o '{out}' is not a regular file", hint="give a file path")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise UsageError(f"cannot write '{out}': the directory '{out.parent}' {what}",
                         hint="create the directory first, or give another -o")
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def open_run(target: str, store: RunStore, stack: contextlib.ExitStack) -> Recorded:
    """The run ``target`` names: an exported file, a ``run.json``, or a run id (prefix)."""
    path = Path(target).expanduser()
    if path.is_file():
        if _looks_like_archive(path):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reprun-")))
            return Recorded(read_record(unpack(path, scratch), str(path)), scratch, str(path))
        return Recorded(read_record(path), path.parent, str(path))
    if path.is_dir() and (path / RECORD).is_file():
        return Recorded(read_record(path / RECORD), path, str(path))
    record = store.get(target)
    check_record(record, str(store.run_dir(record.run_id) / RECORD))
    return Recorded(record, store.run_dir(record.run_id), "store")


def _looks_like_archive(path: Path) -> bool:
    """A gzip or tar file by its first bytes (a truncated archive is still one)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def read_record(path: Path, shown: str | None = None) -> RunRecord:
    shown = shown or str(path)
    hint = "give a run id, a run.json or a file made by 'reprun export'"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise RunNotFoundError(f"cannot read '{shown}': {exc.strerror}", hint=hint) from None
    if len(data) > MAX_RECORD_BYTES:
        raise RunNotFoundError(f"'{shown}' is not a reprun run record (larger than "
                               f"{MAX_RECORD_BYTES >> 20} MiB)", hint=hint)
    try:
        record = RunRecord.model_validate_json(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "the top level"
        msg = " ".join(str(problem["msg"]).split())[:200]
        raise RunNotFoundError(f"'{shown}' is not a reprun run record ({where}: {msg})",
                               hint=hint) from None
    check_record(record, shown)
    return record


_read_record = read_record  # its former name


def check_record(record: RunRecord, shown: str) -> None:
    """Refuse a record whose commits are not full SHAs or whose files leave its directory:
    such values would reach git or the file system."""
    src = record.source
    commits = {"source.resolved_commit": src.resolved_commit, "source.git_commit": src.git_commit}
    commits.update({f"source.submodules[{i}].commit": s.commit
                    for i, s in enumerate(src.submodules)})
    for where, commit in commits.items():
        if commit is not None and not _FULL_SHA.match(commit):
            _bad_record(shown, where, f"'{_short(commit)}' is not a full commit SHA")
    files = {"log_file": record.log_file, "environment.lock_file": record.environment.lock_file,
             "source.patch_file": src.patch_file,
             "source.snapshot.file": src.snapshot.file if src.snapshot else None,
             "metrics_file": record.metrics_file}
    for where, name in files.items():
        if name is not None and not _plain_name(name):
            _bad_record(shown, where, f"'{_short(name)}' is not a plain file name")
    if not re.fullmatch(r"[0-9a-zA-Z_-]{1,128}", record.run_id):
        _bad_record(shown, "run_id", f"'{_short(record.run_id)}' is not a run id")


def _bad_record(shown: str, where: str, why: str) -> None:
    raise RunNotFoundError(f"'{shown}' is not a usable reprun run record ({where}: {why})",
                           hint="give a run id, a run.json or a file made by 'reprun export'")


def _short(text: str) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 60 else cleaned[:57] + "..."


def _plain_name(name: str) -> bool:
    """A relative POSIX path of ordinary names: no ``..``, ``.``, empty or absolute parts."""
    parts = name.split("/")
    return 0 < len(parts) <= 4 and len(name) < 256 and all(
        p not in ("", ".", "..") and not p.startswith("-") and "\\" not in p
        and p.isprintable() for p in parts)


def unpack(archive: Path, dest: Path) -> Path:
    """Check an export against its manifest and unpack it into ``dest`` (a scratch directory
    of the caller's, removed if this fails); returns its run.json.

    The whole structure is checked before anything is written: a damaged archive, a manifest of
    the wrong shape, a name that escapes or collides, a link or a special file is refused. The
    files are then streamed out, each refused if it does not match its digest.
    """
    try:
        _unpack(archive, dest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"'{archive}' is not a readable export (truncated or damaged: {why})",
                         hint="export the run again, or copy the whole file") from None
    return dest / RECORD


def _to_the_end(tar: tarfile.TarFile) -> None:
    """Read what follows the last member (the zero blocks that end a tar, the gzip trailer): a
    file cut within them lists every member, and fails only here, on its length and CRC."""
    stream = tar.fileobj
    if stream is not None:
        while stream.read(1 << 16):
            pass


def _unpack(archive: Path, dest: Path) -> None:
    bad = f"'{archive}' is not a file made by 'reprun export'"
    with tarfile.open(archive, mode="r:*") as tar:
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar:  # reads the whole archive: a truncated one fails here
            if member.name in members:
                raise UsageError(f"{bad}: it holds '{_short(member.name)}' twice")
            members[member.name] = member
        _to_the_end(tar)
        manifest = _manifest(tar, members.get(MANIFEST), archive, bad)
        if RECORD not in manifest:
            raise UsageError(f"{bad}: it holds no {RECORD}")
        for name in manifest:
            found = members.get(name)
            if found is None:
                raise UsageError(f"{bad}: {_short(name)} is listed but missing")
            if not found.isreg():
                raise UsageError(f"{bad}: {_short(name)} is a link or a special file, not a file")
        _check_size(sum(members[name].size for name in manifest), archive)
        for name, digest in manifest.items():
            out = dest.joinpath(*name.split("/"))
            out.parent.mkdir(parents=True, exist_ok=True)
            if _copy_out(tar, members[name], out) != digest:
                raise UsageError(f"'{archive}': {name} does not match its sha256 in the manifest",
                                 hint="the file was changed or truncated; export the run again")


def _check_size(total: int, archive: Path) -> None:
    """Refuse an export that would unpack to more than the limit (a decompression bomb fills
    the disk before any digest can be checked)."""
    text = os.environ.get("REPRUN_EXPORT_MAX_MB", "")
    limit_mb = int(text) if text.isdigit() else DEFAULT_MAX_UNPACKED_MB
    if total > limit_mb << 20:
        raise UsageError(
            f"'{archive}' would unpack to {total / (1 << 20):.1f} MiB, more than the limit of "
            f"{limit_mb} MiB", hint="if you trust the file, set REPRUN_EXPORT_MAX_MB higher")


def _copy_out(tar: tarfile.TarFile, member: tarfile.TarInfo, out: Path) -> str:
    """Write a member to ``out`` (never through a link); returns its sha256."""
    digest = hashlib.sha256()
    handle = tar.extractfile(member)
    with out.open("xb") as target:
        while handle is not None and (chunk := handle.read(1 << 20)):
            digest.update(chunk)
            target.write(chunk)
    return digest.hexdigest()


def _manifest(tar: tarfile.TarFile, member: tarfile.TarInfo | None, archive: Path,
              bad: str) -> dict[str, str]:
    """The manifest's ``files`` (name -> sha256), its whole shape checked."""
    hint = "give a run id, a run.json or an exported file"
    manifest: Any = None
    if member is not None and member.isreg() and member.size <= MAX_RECORD_BYTES:
        handle = tar.extractfile(member)
        try:
            manifest = json.loads(handle.read()) if handle else None
        except ValueError:
            manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(bad, hint=hint)
    if manifest.get("version") != VERSION:
        raise UsageError(f"'{archive}' is export format version "
                         f"{_short(str(manifest.get('version')))}; this reprun reads version "
                         f"{VERSION}", hint="upgrade reprun")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise UsageError(f"{bad}: its manifest's 'files' is not a mapping of names to sha256",
                         hint=hint)
    for name, digest in files.items():
        if not _plain_name(name) or name == MANIFEST:
            raise UsageError(f"{bad}: it names '{_short(name)}', which is not a plain relative "
                             "file name", hint=hint)
        if not _DIGEST.match(digest):
            raise UsageError(f"{bad}: the sha256 of {_short(name)} is not a sha256", hint=hint)
    prefixes = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
    clash = sorted(prefixes & files.keys())
    if clash:
        raise UsageError(f"{bad}: '{_short(clash[0])}' is both a file and a directory",
                         hint=hint)
    return files
