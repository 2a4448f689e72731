"""A run's inputs: which paths they are, their fingerprints, and how a reproduction checks them.

Inputs are the values of ``path`` parameters, the entries of the MLproject's ``data:`` (relative
to the project, never outside it) and the paths DVC tracks in the project
(`runner.tracking.dvc`).
A directory's manifest is saved beside the record (``inputs/<digest>.json``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import Problem, ReprunError, SpecError
from runner.frozen import frozen
from runner.record.types import InputDrift, InputInfo
from runner.spec.types import EntryPoint, ParamType
from runner.tracking.digest import read_manifest, write_manifest
from runner.tracking.dvc import Tracked, tracked
from runner.tracking.fingerprint import Fingerprint, fingerprint_paths
from runner.tracking.statcache import StatCache

MANIFEST_DIR = "inputs"
MANIFEST_NAME = re.compile(r"inputs/[0-9a-f]{32}\.json")  # a record's names are not trusted
SHOWN_FILES = 20


class InputsChangedError(ReprunError):
    """An input of the recorded run holds other content now."""


class InputReadError(ReprunError):
    """An input exists but cannot be read (permissions, a special file)."""


@frozen
class InputSource:
    """A path a run reads, before it is fingerprinted."""

    name: str
    path: Path  # absolute
    shown: str  # as given: absolute for a parameter, relative to the project otherwise
    kind: str  # param, data, dvc
    dvc: Tracked | None = None


@frozen
class Found:
    """An input and what it holds now (None: it does not exist)."""

    source: InputSource
    fingerprint: Fingerprint | None


def input_sources(directory: Path, data: Sequence[str], entry: EntryPoint,
                  values: Mapping[str, str], spec_file: Path | None = None) -> list[InputSource]:
    """The inputs of a run of ``entry`` with ``values`` in the project at ``directory``."""
    sources = [InputSource(name, Path(values[name]), values[name], "param")
               for name, decl in entry.parameters.items()
               if decl.type is ParamType.PATH and name in values]
    by_path: dict[str, InputSource] = {}
    for item in data:
        path = _inside(directory, item, spec_file)
        by_path[_normal(item)] = InputSource(item, path, item, "data")
    for dvc in tracked(directory):
        known = by_path.get(dvc.path)
        if known is not None:
            by_path[dvc.path] = InputSource(known.name, known.path, known.shown, "data", dvc)
        else:
            path = _inside(directory, dvc.path, directory / dvc.record_file)
            by_path[dvc.path] = InputSource(dvc.path, path, dvc.path, "dvc", dvc)
    return sources + list(by_path.values())


def _normal(item: str) -> str:
    import posixpath

    return posixpath.normpath(item.replace("\\", "/"))


def _inside(directory: Path, item: str, spec_file: Path | None) -> Path:
    """The path of ``item`` in the project; a symlink may not lead out of it."""
    path = directory / _normal(item)
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # RuntimeError: a loop (Python before 3.13)
        raise SpecError([Problem(spec_file, "data", f"'{item}' is a symbolic link that loops "
                                 f"({path})", hint="point the link at a file or folder")]
                        ) from None
    root = directory.resolve()
    if resolved != root and root not in resolved.parents:
        raise SpecError([Problem(spec_file, "data",
                                 f"'{item}' leads out of the project (to {resolved})",
                                 hint="keep data inside the project directory")])
    return path


def fingerprint_sources(sources: Sequence[InputSource], cache: StatCache,
                        live: bool = False) -> list[Found]:
    """Each source with its fingerprint; a path that does not exist gets None."""
    present = [s for s in sources if s.path.exists()]
    try:
        prints = dict(zip(present, fingerprint_paths([s.path for s in present], cache, live),
                          strict=True))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise InputReadError(f"cannot read the input data: {exc.strerror or exc}{where}",
                             hint="make the files readable, or leave them out of the inputs"
                             ) from None
    return [Found(s, prints.get(s)) for s in sources]


def require_present(found: Sequence[Found], spec_file: Path | None) -> list[str]:
    """Raise for missing declared data; return warnings for DVC-tracked data not pulled."""
    warnings = []
    for f in found:
        if f.fingerprint is not None:
            continue
        source = f.source
        if source.kind == "data":
            raise SpecError([Problem(spec_file, "data", f"'{source.shown}' does not exist in the "
                                     "project", hint="create it, or remove it from data:")])
        if source.kind == "param":
            raise SpecError([Problem(None, f"parameter '{source.name}'",
                                     f"'{source.shown}' does not exist")])
        record_file = source.dvc.record_file if source.dvc else "?"
        warnings.append(f"'{source.shown}' is tracked by DVC ({record_file}) but missing; "
                        "run 'dvc pull' to fetch it")
    return warnings


def input_records(found: Sequence[Found], run_dir: Path) -> list[InputInfo]:
    """The record's ``inputs``; directory manifests are written to ``run_dir/inputs/``."""
    infos = []
    for f in found:
        s, fp = f.source, f.fingerprint
        md5, dvc_file = (s.dvc.md5, s.dvc.record_file) if s.dvc else (None, None)
        if fp is None:
            infos.append(InputInfo(name=s.name, path=s.shown, kind=s.kind, type="missing",
                                   dvc_md5=md5, dvc_file=dvc_file))
            continue
        manifest = None
        if fp.kind == "directory":
            manifest = f"{MANIFEST_DIR}/{fp.digest.partition(':')[2][:32]}.json"
            write_manifest(run_dir / manifest, fp.digest, fp.entries)
        infos.append(InputInfo(name=s.name, path=s.shown, kind=s.kind, type=fp.kind,
                               digest=fp.digest, size=fp.size, files=fp.files, manifest=manifest,
                               dvc_md5=md5, dvc_file=dvc_file))
    return infos


def input_drift(recorded: Sequence[InputInfo], record_dir: Path | None,
                found: Sequence[Found]) -> list[InputDrift]:
    """The recorded inputs whose content differs from what is found now, file by file."""
    now = {(f.source.kind, f.source.name): f for f in found}
    drift = []
    for info in recorded:
        current = now.get((info.kind, info.name))
        fp = current.fingerprint if current is not None else None
        digest = fp.digest if fp is not None else None
        if digest == info.digest:
            continue
        files = _changed_files(info, record_dir, fp)
        drift.append(InputDrift(name=info.name, recorded=info.digest, found=digest,
                                files=files[:SHOWN_FILES]))
    return drift


def _changed_files(info: InputInfo, record_dir: Path | None,
                   fp: Fingerprint | None) -> list[str]:
    if fp is None:
        return [f"{info.path} (missing)"]
    if info.type != "directory" or fp.kind != "directory" or info.manifest is None:
        return [f"{info.path} (changed)"]
    safe = record_dir is not None and MANIFEST_NAME.fullmatch(info.manifest)
    before = read_manifest(record_dir / info.manifest) if safe and record_dir else {}
    if not before:
        return [f"{info.path} (changed)"]
    after = {e.path: e.digest for e in fp.entries}
    base = info.path.rstrip("/")
    changed = [f"{base}/{p} (changed)" for p in sorted(before.keys() & after.keys())
               if before[p] != after[p]]
    added = [f"{base}/{p} (added)" for p in sorted(after.keys() - before.keys())]
    removed = [f"{base}/{p} (removed)" for p in sorted(before.keys() - after.keys())]
    return changed + added + removed


def drift_error(run_id: str, drift: Sequence[InputDrift]) -> InputsChangedError:
    """One line naming the changed files."""
    files = [f for d in drift for f in d.files]
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    names = ", ".join(f"'{d.name}'" for d in drift)
    return InputsChangedError(
        f"input{'s' if len(drift) > 1 else ''} {names} of run {run_id[:12]} changed: {shown}",
        hint="restore the data, or pass --allow-drift to run anyway and record the drift",
    )
