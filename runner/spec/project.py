"""Load a project directory: find its MLproject, validate it eagerly, pick its environment.

Every problem becomes a `Problem` naming the file, the line and the key; unknown keys are warnings
(errors with ``strict``) that suggest the nearest valid key. A file that validated once is kept,
as its validated dump and warnings, in a cache keyed by its bytes (``cache_dir``); loading the same
bytes again reads that instead of importing YAML and pydantic (`runner.spec.validate`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, TypeVar

from runner import __version__
from runner.errors import Problem, ProjectNotFoundError, SpecError
from runner.frozen import frozen
from runner.fsutil import atomic_write_text
from runner.spec.types import (
    CondaEnvFile,
    Conversion,
    DockerEnv,
    EntryPoint,
    MLProject,
    PythonEnvFile,
)

EnvKind = Literal["python_env", "conda_env", "docker_env", "none"]
SCRIPT_RUNNERS = {".py": "python", ".sh": "bash"}
DEFAULT_ENTRY_POINT = "main"


@frozen
class EnvRequest:
    """What environment the project asks for, before anything is resolved."""

    kind: EnvKind
    file: Path | None = None
    python_env: PythonEnvFile | None = None
    docker: DockerEnv | None = None
    conda_env: CondaEnvFile | None = None
    conversion: Conversion | None = None  # a conda_env to be installed from PyPI


@frozen
class Project:
    """A loaded, validated project."""

    directory: Path
    spec_file: Path | None
    spec: MLProject
    env: EnvRequest
    warnings: tuple[Problem, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.spec.name or self.directory.name

    def entry_point(self, name: str) -> EntryPoint:
        """The declared entry point ``name``, or a script of the project run by extension."""
        if name in self.spec.entry_points:
            return self.spec.entry_points[name]
        suffix = Path(name).suffix
        if suffix in SCRIPT_RUNNERS:
            script = self.directory / name
            if not inside(self.directory, script):
                raise SpecError([Problem(
                    None, "entry point", f"script '{name}' is outside the project directory "
                    f"{self.directory}", hint="copy the script into the project, so that its "
                    "commit or snapshot holds it and a reproduction finds it")])
            if not script.is_file():
                raise SpecError(
                    [Problem(None, "entry point", f"script '{name}' not found in {self.directory}")]
                )
            command = f"{SCRIPT_RUNNERS[suffix]} {shlex.quote(name)}"
            # Braces in a file name are literal: escape them for the formatter.
            return EntryPoint(command=command.replace("{", "{{").replace("}", "}}"))
        declared = ", ".join(sorted(self.spec.entry_points)) or "none"
        where = self.spec_file or self.directory
        hint = (
            f"choose one of: {declared}, or name a .py or .sh file of the project"
            if self.spec.entry_points
            else "this project declares no entry points: pass -e script.py or -e script.sh"
        )
        raise SpecError([Problem(where, "", f"unknown entry point '{name}'", hint=hint)])


def find_spec_file(directory: Path) -> Path | None:
    """The MLproject file of ``directory`` (any letter case); two spellings are an error."""
    found = sorted(p for p in directory.iterdir() if p.name.lower() == "mlproject" and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SpecError(
            [Problem(directory, "", f"several MLproject files ({names})", hint="keep only one")]
        )
    return found[0] if found else None


def load_project(directory: Path, strict: bool = False, cache_dir: Path | None = None) -> Project:
    """Load and validate the project in ``directory``; ``cache_dir`` keeps validated files."""
    if not directory.is_dir():
        raise ProjectNotFoundError(
            f"project directory '{directory}' does not exist",
            hint="give the path of a directory that holds the project",
        )
    directory = directory.resolve()
    spec_file = find_spec_file(directory)
    files = _Files(strict, cache_dir)
    spec = MLProject() if spec_file is None else files.load(
        spec_file, "mlproject", MLProject.from_dump)
    env = _environment(directory, spec, spec_file, files)
    return Project(directory, spec_file, spec, env, tuple(files.warnings))


SPEC_CACHE = "spec"  # under the cache root: validated MLproject and environment files
PY_ENV, CONDA_ENV = "python_env_file", "conda_env_file"
T = TypeVar("T")
VALIDATOR_SOURCES = ("models.py", "validate.py", "types.py", "pipelines.py")


class _Files:
    """Validates the files of one project, through the cache of validated files."""

    def __init__(self, strict: bool, cache_dir: Path | None) -> None:
        self.strict = strict
        self.cache_dir = cache_dir
        self.warnings: list[Problem] = []

    def load(self, path: Path, kind: str, make: Callable[[dict[str, Any]], T]) -> T:
        """``path`` validated as ``kind`` and made into its type by ``make``; its warnings are
        added (raised with ``strict``). A cache entry that ``make`` refuses is validated again.
        """
        raw = path.read_bytes()
        entry = self.cache_dir / f"{_cache_key(kind, raw)}.json" if self.cache_dir else None
        cached = _read_entry(entry) if entry is not None else None
        if cached is not None and entry is not None:
            with contextlib.suppress(OSError):
                os.utime(entry)  # last used: `reprun env prune` keeps what is in use
        try:
            made = make(cached["dump"]) if cached is not None else None
            found = [Problem(path, w["key"], w["message"], w["line"], w["hint"])
                     for w in cached["warnings"]] if cached is not None else []
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            made = None
        if made is None:
            from runner.spec.validate import validate_file

            dump, found = validate_file(path, kind, self.strict)
            made = make(dump)
            if entry is not None:
                _write_entry(entry, dump, found)
        if self.strict and found:
            from runner.spec.validate import as_error

            raise SpecError([as_error(w) for w in found])
        self.warnings.extend(found)
        return made


def cached_dump(cache_dir: Path, kind: str, raw: bytes) -> dict[str, Any] | None:
    """The validated dump of ``raw`` (a file's bytes) as ``kind`` from the cache, or None."""
    entry = _read_entry(cache_dir / f"{_cache_key(kind, raw)}.json")
    return entry["dump"] if entry is not None else None


def prune_validated(cache_dir: Path, cutoff: float, dry_run: bool) -> int:
    """Remove (or count, with ``dry_run``) validated files not used since ``cutoff``."""
    removed = 0
    for entry in cache_dir.glob("*.json") if cache_dir.is_dir() else []:
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if not dry_run:
                    entry.unlink()
                removed += 1
    return removed


def _cache_key(kind: str, raw: bytes) -> str:
    """The file's bytes, its kind and the validating code."""
    return hashlib.sha256(f"{_validator_code()}\0{kind}\0".encode() + raw).hexdigest()


_VALIDATOR: list[str] = []


def _validator_code() -> str:
    """reprun's version and the size and time of the files that validate: reprun's own and
    pydantic's (found without importing it)."""
    if not _VALIDATOR:
        import importlib.util

        here = Path(__file__).parent
        files = [here / name for name in VALIDATOR_SOURCES]
        found = importlib.util.find_spec("pydantic")
        if found is not None and found.origin is not None:
            files.append(Path(found.origin).with_name("version.py"))
        parts = [__version__]
        for path in files:
            with contextlib.suppress(OSError):
                stat = path.stat()
                parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
        _VALIDATOR.append("\0".join(parts))
    return _VALIDATOR[0]


def _read_entry(entry: Path) -> dict[str, Any] | None:
    """A cache entry, or None when it is missing or not one (it is then written again)."""
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("dump"), dict) or not isinstance(
            data.get("warnings"), list):
        return None
    return data


def _write_entry(entry: Path, dump: dict[str, Any], warnings: list[Problem]) -> None:
    listed = [{"key": w.key, "message": w.message, "line": w.line, "hint": w.hint}
              for w in warnings]
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(entry, json.dumps({"dump": dump, "warnings": listed}), durable=False)


def _environment(
    directory: Path, spec: MLProject, spec_file: Path | None, files: _Files
) -> EnvRequest:
    """MLflow's order: docker_env, python_env, conda_env, python_env.yaml, conda.yaml, none."""
    if spec.docker_env is not None:
        dockerfile = spec.docker_env.dockerfile
        path = _env_file(directory, spec_file, "docker_env.dockerfile", dockerfile) if (
            dockerfile) else None
        return EnvRequest("docker_env", path, docker=spec.docker_env)
    if spec.python_env is not None:
        path = _env_file(directory, spec_file, "python_env", spec.python_env)
        return EnvRequest("python_env", path, files.load(path, PY_ENV, PythonEnvFile.from_dump))
    if spec.conda_env is not None:
        path = _env_file(directory, spec_file, "conda_env", spec.conda_env)
        return EnvRequest("conda_env", path,
                          conda_env=files.load(path, CONDA_ENV, CondaEnvFile.from_dump))
    if (directory / "python_env.yaml").is_file():
        path = directory / "python_env.yaml"
        return EnvRequest("python_env", path, files.load(path, PY_ENV, PythonEnvFile.from_dump))
    if (directory / "conda.yaml").is_file():
        path = directory / "conda.yaml"
        return EnvRequest("conda_env", path,
                          conda_env=files.load(path, CONDA_ENV, CondaEnvFile.from_dump))
    return EnvRequest("none")


def inside(directory: Path, path: Path) -> bool:
    """Whether ``path`` (symbolic links resolved) is ``directory`` or inside it."""
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return False


def _env_file(directory: Path, spec_file: Path | None, key: str, value: str) -> Path:
    path = directory / value
    if not inside(directory, path):
        raise SpecError([Problem(
            spec_file, key, f"'{value}' is outside the project directory {directory}",
            hint="keep the file in the project, so that its commit or snapshot holds it and a "
                 "reproduction finds it")])
    if not path.is_file():
        raise SpecError([Problem(spec_file, key, f"file '{value}' not found in {directory}",
                                 hint="create it or fix the path (relative to the project)")])
    return path


__all__ = ["EnvRequest", "Project", "load_project"]
