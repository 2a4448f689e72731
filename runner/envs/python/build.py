"""What the ``uv`` and ``virtualenv`` managers share: lock through the cache, build through it.

``lock``: the request key selects a cached lock; without one (or with ``refresh``) the request is
resolved under the key's file lock and the lock saved. ``ensure``: the lock's content key selects a
cached environment; a cache hit reads one small JSON marker and stats a few files, and spawns
nothing. A miss builds in a fresh directory under the key's file lock and publishes it atomically.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from runner.envs.base import EnvSpec, Lock, PythonFacts, ResolvedEnv
from runner.envs.cache import CachedEnv, PythonCache, cache_root
from runner.envs.local import inspect_python
from runner.envs.progress import Progress
from runner.envs.python.lock import (
    LOCK_FILENAME,
    Compiling,
    Interpreter,
    anchor_entry,
    installs_project_files,
    lock_interpreter,
    log_path,
    split_lock,
    start_compile,
)
from runner.envs.python.request import PythonRequest, is_url_option, make_request
from runner.errors import EnvBuildError
from runner.fsutil import sha256_bytes

Marker = dict[str, Any]
WAITING = "waiting for another reprun that is building this environment"


class PythonBuilder:
    """A virtual environment built from a hashed lock; subclasses create and install."""

    kind: ClassVar[str] = ""

    # --- to implement -----------------------------------------------------------------------

    def find_interpreter(self, python: str | None, spec: EnvSpec, logs: Path) -> Interpreter:
        raise NotImplementedError

    def create(self, build: Path, interpreter: Interpreter, spec: EnvSpec, log: Path) -> None:
        raise NotImplementedError

    def install(self, build: Path, requirements: Path, local: list[list[str]], spec: EnvSpec,
                log: Path) -> None:
        raise NotImplementedError

    # --- the contract ------------------------------------------------------------------------

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        cache = self.cache(spec)
        request = self.request(spec)
        progress = Progress(spec.notify, spec.live)

        def resolve() -> str:
            interpreter = self.find_interpreter(request.python, spec, cache.logs)
            if spec.target_python:  # runs elsewhere (an image): resolve for that version
                interpreter = Interpreter(interpreter.path, spec.target_python)
            early = spec.resolving
            if early is not None and (early.key, early.interpreter) == (request.key, interpreter):
                compiling = early  # started while the project was validated: same request
            else:
                compiling = start_compile(request, interpreter, self.kind, cache.logs,
                                          self.tool_env(spec), spec.project_dir)
            if not request.lines:  # nothing to resolve: the header alone
                return self._lock_text(spec, compiling)
            doing = f"resolving with uv for python {interpreter.version}"
            with progress.phase(doing, since=compiling.started) as done:
                text = self._lock_text(spec, compiling)
                done(f"{len(split_lock(text)[0])} package(s) pinned with hashes")
            return text

        text = cache.lock_text(request.key, resolve, refresh,
                               on_wait=lambda: progress.say(WAITING))
        return Lock(self.kind, LOCK_FILENAME, text)

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        cache = self.cache(spec)
        key = self.env_key(spec, lock)
        progress = Progress(spec.notify, spec.live)
        entry = cache.find_or_build(key, lambda: self._build(spec, lock, cache, key, progress),
                                    on_wait=lambda: progress.say(WAITING))
        cache.touch(entry, spec.project_dir)
        return resolved_env(self.kind, lock, entry)

    # --- helpers ------------------------------------------------------------------------------

    def cache(self, spec: EnvSpec) -> PythonCache:
        return PythonCache(cache_root(spec.base_env))

    def request(self, spec: EnvSpec) -> PythonRequest:
        env_file = spec.request.python_env
        python = env_file.python if env_file else None
        lines = [*env_file.build_dependencies, *env_file.dependencies] if env_file else []
        conversion = spec.request.conversion
        converted = None
        if conversion is not None:
            from runner.envs.conda import key_material

            converted = key_material(conversion)
        return make_request(self.kind, python, lines, spec.project_dir, spec.request.file,
                            spec.base_env, converted, target=spec.target_python)

    def _lock_text(self, spec: EnvSpec, compiling: Compiling) -> str:
        """The resolved lock; for a converted conda.yaml, the conversion under its header."""
        conversion = spec.request.conversion
        if conversion is None:
            return compiling.text()
        from runner.envs.conda import explain_not_found, with_conversion

        try:
            return with_conversion(compiling.text(), conversion)
        except EnvBuildError as exc:
            raise explain_not_found(exc, conversion) from None

    def env_key(self, spec: EnvSpec, lock: Lock) -> str:
        """The lock's content; and the project's place when the lock installs a local package of
        it (two checkouts of one project have one lock, but ``-e .`` points at one of them)."""
        where = f"\nproject: {spec.project_dir}" if installs_project_files(lock.content) else ""
        return sha256_bytes(f"{self.kind}\n{lock.content}{where}".encode())

    def tool_env(self, spec: EnvSpec) -> dict[str, str]:
        return tool_env(spec.base_env)

    def _build(self, spec: EnvSpec, lock: Lock, cache: PythonCache, key: str,
               progress: Progress) -> CachedEnv:
        interpreter = self.lock_python(lock, spec, cache.logs)
        build = cache.new_build_dir(key)
        log = log_path(cache.logs, "build", key)
        hashed, local = (
            [anchor_entry(e, spec.project_dir) for e in entries]
            for entries in split_lock(lock.content))
        with progress.phase(f"building the {self.kind} environment {key[:12]}") as done:
            self.create(build, interpreter, spec, log)
            if hashed:
                requirements = log.with_suffix(".txt")
                options = [ln for ln in self.request(spec).lines if is_url_option(ln)]
                requirements.write_text("\n".join([*options, *hashed]) + "\n", encoding="utf-8")
                self.install(build, requirements, [shlex.split(e) for e in local], spec, log)
            elif local:
                self.install(build, Path(), [shlex.split(e) for e in local], spec, log)
            marker = describe(build, self.kind, interpreter, self.tool_env(spec))
            done(f"{len(marker['packages'])} package(s) installed")
        return cache.publish(key, build, marker)

    def lock_python(self, lock: Lock, spec: EnvSpec, logs: Path) -> Interpreter:
        """The interpreter to install ``lock`` with: the request's when it has the locked version,
        else one of exactly that version when this machine has it (a lock from elsewhere), else
        the request's (the run's facts then show the version it really has)."""
        locked = lock_interpreter(lock.content)
        if locked is not None and locked.path and Path(locked.path).exists():
            return locked  # a lock written before locks were portable names its interpreter
        found = self.find_interpreter(self.request(spec).python, spec, logs)
        if locked is None or not locked.version or found.version == locked.version:
            return found
        try:
            return self.find_interpreter(locked.version, spec, logs)
        except EnvBuildError:
            return found


def tool_env(base_env: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment for uv/pip, without an active virtual environment."""
    env = {k: v for k, v in base_env.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env["UV_NO_PROGRESS"] = "1"
    return env


def describe(build: Path, manager: str, base: Interpreter, env: Mapping[str, str]) -> Marker:
    """The completeness marker: what the environment holds, and files that must stay there.

    Read from the files (pyvenv.cfg, dist-info folders) rather than by starting the new python.
    """
    version = venv_python_version(build)
    if version is None or not (build / "bin" / "python").exists():
        facts = inspect_python(str(build / "bin" / "python"), dict(env), cwd=build)
        if facts.version is None:
            raise EnvBuildError(f"the new environment in {build} has no working python")
        version = facts.version
    dist_infos = sorted(build.glob("lib/python*/site-packages/*.dist-info"))
    packages = sorted((_dist_name(d), _dist_version(d)) for d in dist_infos)
    return {
        "manager": manager,
        "python": "bin/python",
        "python_version": version,
        "base_interpreter": base.path,
        "packages": [list(p) for p in sorted(packages, key=lambda p: p[0].lower())],
        "files": [d.relative_to(build).as_posix() for d in dist_infos],
    }


def venv_python_version(build: Path) -> str | None:
    """``version_info`` (or ``version``) from pyvenv.cfg, as uv and virtualenv write it."""
    try:
        lines = (build / "pyvenv.cfg").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    values = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in lines)}
    found = values.get("version_info") or values.get("version")
    return ".".join(found.split(".")[:3]) if found else None


def _dist_name(dist_info: Path) -> str:
    return _metadata(dist_info).get("Name") or dist_info.name.rsplit("-", 1)[0]


def _dist_version(dist_info: Path) -> str:
    return _metadata(dist_info).get("Version") or dist_info.stem.rsplit("-", 1)[-1]


def _metadata(dist_info: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with (dist_info / "METADATA").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def resolved_env(manager: str, lock: Lock, entry: CachedEnv) -> ResolvedEnv:
    marker = entry.marker
    packages = tuple((str(n), str(v)) for n, v in marker.get("packages", []))
    facts = PythonFacts(str(marker.get("python_version")), str(entry.path / "bin" / "python"),
                        packages)
    return ResolvedEnv(
        manager, lock, entry.key, facts,
        path_prepend=(str(entry.path / "bin"),),
        variables={"VIRTUAL_ENV": str(entry.path)},
    )


def default_interpreter() -> Interpreter:
    """MLflow's default when python_env names no version: the interpreter running reprun."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return Interpreter(str(base), platform.python_version())


def interpreter_missing(python: str, where: str, log: Path | None,
                        spec: EnvSpec) -> EnvBuildError:
    full = f"; full log: {log}" if log is not None else ""
    asked, change = _python_source(spec)
    return EnvBuildError(
        f"Python {python} ({asked}) was not found among the installed interpreters ({where})",
        hint=f"install it, e.g. 'uv python install {python}' where the internet allows, or with "
             f"your system's packages, or {change}{full}",
    )


def _python_source(spec: EnvSpec) -> tuple[str, str]:
    """Which file asked for the Python version, and how to change it there."""
    conversion = spec.request.conversion
    if conversion is not None:
        return (f"python of {conversion.file}",
                f"change the python= dependency in {conversion.file}")
    name = spec.request.file.name if spec.request.file is not None else "python_env.yaml"
    return f"python_env 'python' of {name}", f"change 'python' in {name}"


def dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True)
