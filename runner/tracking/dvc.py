"""Data tracked by DVC, found from the hashes DVC already records, without importing DVC.

A project inside a DVC repository (a ``.dvc/`` directory in it or above it) has ``*.dvc`` files
(``outs:`` of ``dvc add``) and ``dvc.lock`` files (``stages: NAME: outs:`` of pipelines). Each
``outs`` entry names a path relative to the file that records it and its md5 (``<hex>.dir`` for a
directory). reprun records that md5 as given and fingerprints the data itself as well (through the
stat cache, so it is read once): DVC's md5 links the run to DVC's cache and remotes, reprun's digest
compares it with every other run's inputs and outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import Problem, SpecError
from runner.frozen import frozen
from runner.spec.types import data_path_problem

SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv"})


@frozen
class Tracked:
    """One path DVC tracks."""

    path: str  # relative to the project, POSIX
    md5: str | None  # as DVC records it; None when not yet computed (a stage never run)
    record_file: str  # the .dvc or dvc.lock file, relative to the project


def in_dvc_repo(directory: Path) -> bool:
    """Whether ``directory`` is in a DVC repository (a ``.dvc`` directory here or above)."""
    return any((d / ".dvc").is_dir() for d in (directory, *directory.parents))


def tracked(directory: Path) -> list[Tracked]:
    """Every path the ``.dvc`` and ``dvc.lock`` files under ``directory`` track."""
    if not in_dvc_repo(directory):
        return []
    found: dict[str, Tracked] = {}
    for record in sorted(_record_files(directory)):
        for item in _outs(record, directory):
            found.setdefault(item.path, item)
    return sorted(found.values(), key=lambda t: t.path)


def _record_files(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            if name.endswith(".dvc") or name == "dvc.lock":
                yield Path(root) / name


def _outs(record: Path, project: Path) -> list[Tracked]:
    data = _load(record)
    rel = record.relative_to(project).as_posix()
    if record.name == "dvc.lock":
        stages = data.get("stages") or {}
        if not isinstance(stages, dict):
            raise _broken(record, "stages", "must be a mapping of stage names")
        outs: list[tuple[str, Any]] = [(f"stages.{name}.outs", out) for name, stage in
                                       stages.items() if isinstance(stage, dict)
                                       for out in _list(record, f"stages.{name}.outs",
                                                        stage.get("outs"))]
    else:
        outs = [("outs", out) for out in _list(record, "outs", data.get("outs"))]
    return [_entry(record, project, rel, key, out) for key, out in outs]


def _load(record: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _broken(record, "", f"cannot be read as YAML ({reason})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _broken(record, "", "must be a mapping with 'outs' (or 'stages')")
    return data


def _list(record: Path, key: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _broken(record, key, "must be a list of outputs (path, md5)")
    return value


def _entry(record: Path, project: Path, rel: str, key: str, out: Any) -> Tracked:
    if not isinstance(out, dict) or not isinstance(out.get("path"), str):
        raise _broken(record, key, f"an entry has no 'path' ({out!r})")
    md5 = out.get("md5")
    if md5 is not None and not isinstance(md5, str):
        raise _broken(record, key, f"'md5' of '{out['path']}' is not text ({md5!r})")
    joined = (record.parent / out["path"]).relative_to(project).as_posix() if not Path(
        out["path"]).is_absolute() else out["path"]
    problem = data_path_problem(joined)
    if problem is not None:
        raise _broken(record, key, problem)
    return Tracked(os.path.normpath(joined).replace(os.sep, "/"), md5, rel)


def _broken(record: Path, key: str, message: str) -> SpecError:
    return SpecError([Problem(record, key, f"not a valid DVC file: {message}",
                              hint="fix it with DVC (dvc add / dvc repro) or remove it")])
