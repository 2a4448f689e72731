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
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from runner.errors import RunNotFoundError, UsageError
from runner.frozen import frozen
from runner.fsutil import sha256_bytes, sha256_file
from runner.record.store import RECORD, RunStore
from runner.record.types import RunRecord

FORMAT = "reprun-export"
VERSION = 1
MANIFEST = "manifest.json"


@frozen
class Recorded:
    """A run's record and the directory holding the files it names (lock, patch, snapshot)."""

    record: RunRecord
    directory: Path
    origin: str


def bundled_files(record: RunRecord, directory: Path) -> list[str]:
    """The names, relative to the run's directory, of the files an export carries."""
    names = [RECORD, record.log_file, record.environment.lock_file, record.source.patch_file,
             record.source.snapshot.file if record.source.snapshot else None,
             record.metrics_file]
    found = [n for n in names if n and (directory / n).is_file()]
    spec = directory / "spec"
    if spec.is_dir():
        found += [p.relative_to(directory).as_posix() for p in sorted(spec.iterdir())
                  if p.is_file()]
    return found


def export_run(store: RunStore, run_id: str, out: Path | None) -> Path:
    """Write the export of run ``run_id`` to ``out`` (default: reprun-<id>.tar.gz here)."""
    record = store.get(run_id)
    directory = store.run_dir(record.run_id)
    target = out or Path(f"reprun-{record.run_id[:12]}.tar.gz")
    names = bundled_files(record, directory)
    manifest = {"format": FORMAT, "version": VERSION, "run_id": record.run_id,
                "files": {n: sha256_file(directory / n) for n in names}}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    with target.open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, data)
        for name in names:
            _add(tar, name, (directory / name).read_bytes())
    return target


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def open_run(target: str, store: RunStore, stack: contextlib.ExitStack) -> Recorded:
    """The run ``target`` names: an exported file, a ``run.json``, or a run id (prefix)."""
    path = Path(target).expanduser()
    if path.is_file():
        if tarfile.is_tarfile(path):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reprun-")))
            return Recorded(_read_record(unpack(path, scratch)), scratch, str(path))
        return Recorded(_read_record(path), path.parent, str(path))
    if path.is_dir() and (path / RECORD).is_file():
        return Recorded(_read_record(path / RECORD), path, str(path))
    record = store.get(target)
    return Recorded(record, store.run_dir(record.run_id), "store")


def _read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "the top level"
        raise RunNotFoundError(f"'{path}' is not a reprun run record ({where}: {problem['msg']})",
                               hint="give a run id, a run.json or a file made by 'reprun export'"
                               ) from None


def unpack(archive: Path, dest: Path) -> Path:
    """Check an export against its manifest and unpack it into ``dest``; returns its run.json."""
    bad = f"'{archive}' is not a file made by 'reprun export'"
    with tarfile.open(archive, mode="r:*") as tar:
        try:
            member = tar.extractfile(MANIFEST)
            manifest = json.loads(member.read()) if member else None
        except (KeyError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UsageError(bad, hint="give a run id, a run.json or an exported file")
        if manifest.get("version") != VERSION:
            raise UsageError(f"'{archive}' is export format version {manifest.get('version')}; "
                             f"this reprun reads version {VERSION}", hint="upgrade reprun")
        for name, digest in dict(manifest.get("files", {})).items():
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts:
                raise UsageError(f"{bad}: it names '{name}'")
            try:
                handle = tar.extractfile(name)
            except KeyError:
                raise UsageError(f"{bad}: {name} is listed but missing") from None
            data = handle.read() if handle else b""
            if sha256_bytes(data) != digest:
                raise UsageError(f"'{archive}': {name} does not match its sha256 in the manifest",
                                 hint="the file was changed or truncated; export the run again")
            out = dest.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    if not (dest / RECORD).is_file():
        raise UsageError(f"{bad}: it holds no {RECORD}")
    return dest / RECORD
