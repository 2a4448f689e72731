"""Start resolving a project's python_env while the project is still being validated.

On a project's first run, validating its MLproject and python_env.yaml imports YAML and pydantic
(~0.2 s) before the environment's request is known, and resolving it (``uv pip compile``) then
waits on the package index. Both can overlap: the request is read from the raw files at once and
its resolution started in the background. The builder uses that resolution only if the request it
computes from the *validated* files has the same key and interpreter; otherwise it is cancelled.
Nothing is started when both files are in the validated-file cache (validation costs nothing
then), when the lock is cached, or when anything about the raw files looks unusual: the normal
path then validates and reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.envs.cache import PythonCache, cache_root
from runner.envs.python import Compiling, default_interpreter, make_request, start_compile, tool_env
from runner.spec.project import cached_dump, find_spec_file, inside

EARLY_MANAGERS = ("uv", "virtualenv")


def resolve_early(directory: Path, manager: str | None, base_env: Mapping[str, str],
                  spec_cache: Path, refresh: bool) -> Compiling | None:
    """A background resolution of the project's python_env, or None (see the module)."""
    manager = manager or "uv"
    if manager not in EARLY_MANAGERS:
        return None
    try:
        return _start(directory.resolve(), manager, base_env, spec_cache, refresh)
    except Exception:
        return None


def _start(directory: Path, manager: str, base_env: Mapping[str, str], spec_cache: Path,
           refresh: bool) -> Compiling | None:
    found = _python_env_file(directory, spec_cache)
    if found is None:
        return None
    env_file, spec_validated = found
    raw_env = env_file.read_bytes()
    if spec_validated and cached_dump(spec_cache, "python_env_file", raw_env) is not None:
        return None  # both files validated: validating costs nothing, nothing to overlap
    from runner.spec.yamlfile import parse_yaml

    python, lines = _python_and_lines(parse_yaml(raw_env)[1])
    if python is not None or lines is None:  # a named version is found by the builder
        return None
    request = make_request(manager, python, lines, directory, env_file, base_env)
    cache = PythonCache(cache_root(base_env))
    if not request.lines or (not refresh and cache.read_lock(request.key) is not None):
        return None
    return start_compile(request, default_interpreter(), manager, cache.logs, tool_env(base_env),
                         directory)


def _python_env_file(directory: Path, spec_cache: Path) -> tuple[Path, bool] | None:
    """The python_env file the MLproject names (or python_env.yaml beside it) and whether the
    MLproject is validated already; None when it asks for another kind of environment."""
    spec_file = find_spec_file(directory)
    data: Any = {}
    validated = True
    if spec_file is not None:
        raw_spec = spec_file.read_bytes()
        data = cached_dump(spec_cache, "mlproject", raw_spec)
        validated = data is not None
        if data is None:
            from runner.spec.yamlfile import parse_yaml

            data = parse_yaml(raw_spec)[1]
        if not isinstance(data, dict) or data.get("docker_env") or data.get("conda_env"):
            return None
        named = data.get("python_env")
        if named is not None:
            if not isinstance(named, str) or not inside(directory, directory / named):
                return None  # the validation refuses it and says why
            return directory / named, validated
    default = directory / "python_env.yaml"
    return (default, validated) if default.is_file() else None


def _python_and_lines(raw: Any) -> tuple[str | None, list[str] | None]:
    """``python`` and the requirement lines of a raw python_env.yaml; (None, None) if odd."""
    if not isinstance(raw, dict) or set(raw) - {"python", "build_dependencies", "dependencies"}:
        return None, None
    lists = [raw.get("build_dependencies") or [], raw.get("dependencies") or []]
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists):
        return None, None
    python = raw.get("python")
    if python is not None and not isinstance(python, str):
        return None, None
    return python, [*lists[0], *lists[1]]
