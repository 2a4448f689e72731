"""The ``uv`` manager: ``uv venv`` + ``uv pip install --require-hashes`` from the lock.

A project with ``pyproject.toml`` and ``uv.lock`` is installed with ``uv sync --frozen`` instead:
its ``uv.lock`` already is the lock (pinned, hashed), so nothing is resolved.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from runner.envs.base import EnvSpec, Lock, ResolvedEnv
from runner.envs.cache import CachedEnv, PythonCache
from runner.envs.progress import Progress
from runner.envs.python.build import (
    WAITING,
    PythonBuilder,
    default_interpreter,
    describe,
    interpreter_missing,
)
from runner.envs.python.lock import Interpreter, log_path, run_logged, uv_bin
from runner.errors import EnvBuildError
from runner.fsutil import sha256_bytes, sha256_file
from runner.process import capture

UV_LOCK = "uv.lock"
VERSION_CODE = "import platform; print(platform.python_version())"


class UvBuilder(PythonBuilder):
    kind: ClassVar[str] = "uv"

    def find_interpreter(self, python: str | None, spec: EnvSpec, logs: Path) -> Interpreter:
        if python is None:
            return default_interpreter()
        log = log_path(logs, "python", python)
        done = run_logged([uv_bin(), "python", "find", python, "--color", "never"], log,
                          self.tool_env(spec))
        if not done.ok or not done.stdout.strip():
            raise interpreter_missing(python, "uv python find", log, spec)
        path = done.stdout.strip().splitlines()[-1]
        version = capture([path, "-c", VERSION_CODE], env=self.tool_env(spec), timeout=60)
        if not version.ok:
            raise interpreter_missing(python, f"{path} does not start", log, spec)
        return Interpreter(path, version.stdout.strip())

    def create(self, build: Path, interpreter: Interpreter, spec: EnvSpec, log: Path) -> None:
        argv = [uv_bin(), "venv", str(build), "--python", interpreter.path, "--no-project",
                "--quiet", "--color", "never"]
        if not run_logged(argv, log, self.tool_env(spec)).ok:
            raise EnvBuildError(f"'uv venv' failed for python {interpreter.path}",
                                hint=f"full log: {log}")

    def install(self, build: Path, requirements: Path, local: list[list[str]], spec: EnvSpec,
                log: Path) -> None:
        """Each step first with ``--offline``: the lock pins every artifact by hash and uv's cache
        usually holds them with their index pages (the resolution just read them), so nothing
        needs the network; when the cache lacks something the step runs again online."""
        python = str(build / "bin" / "python")
        base = [uv_bin(), "pip", "install", "--python", python, "--no-deps", "--color", "never"]
        steps = [[*base, "--require-hashes", "-r", str(requirements)]] if requirements.name else []
        steps += [[*base, *args] for args in local]
        for argv in steps:
            done = run_logged([*argv, "--offline"], log, self.tool_env(spec))
            if not done.ok:
                done = run_logged(argv, log, self.tool_env(spec))
            if not done.ok:
                from runner.envs.python.lock import explain

                raise EnvBuildError(explain(done.stderr, "installing the environment failed"),
                                    hint=f"full log: {log}")

    # --- projects with uv.lock ------------------------------------------------------------

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        uv_lock = _uv_lock(spec)
        if uv_lock is None:
            return super().lock(spec, refresh)
        return Lock(self.kind, UV_LOCK, uv_lock.read_text(encoding="utf-8"))

    def env_key(self, spec: EnvSpec, lock: Lock) -> str:
        if lock.filename != UV_LOCK:
            return super().env_key(spec, lock)
        parts = [self.kind, UV_LOCK, lock.sha256, str(spec.project_dir), self._python(spec) or ""]
        for name in ("pyproject.toml", ".python-version"):
            path = spec.project_dir / name
            parts.append(sha256_file(path) if path.is_file() else "-")
        return sha256_bytes("\n".join(parts).encode())

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        if lock.filename != UV_LOCK:
            return super().ensure(spec, lock)
        cache = self.cache(spec)
        key = self.env_key(spec, lock)
        progress = Progress(spec.notify, spec.live)
        entry = cache.find_or_build(key, lambda: self._sync(spec, cache, key, progress),
                                    on_wait=lambda: progress.say(WAITING))
        cache.touch(entry, spec.project_dir)
        from runner.envs.python.build import resolved_env

        return resolved_env(self.kind, lock, entry)

    def _python(self, spec: EnvSpec) -> str | None:
        env_file = spec.request.python_env
        return env_file.python if env_file else None

    def _sync(self, spec: EnvSpec, cache: PythonCache, key: str,
              progress: Progress) -> CachedEnv:
        build = cache.new_build_dir(key)
        log = log_path(cache.logs, "sync", key)
        env = {**self.tool_env(spec), "UV_PROJECT_ENVIRONMENT": str(build)}
        argv = [uv_bin(), "sync", "--frozen", "--no-dev", "--color", "never"]
        python = self._python(spec)
        if python is not None:
            argv += ["--python", python]
        with progress.phase(f"installing {UV_LOCK} with uv sync --frozen") as done:
            result = run_logged(argv, log, env, cwd=spec.project_dir)
            if not result.ok:
                from runner.envs.python.lock import explain

                raise EnvBuildError(explain(result.stderr, "uv sync --frozen failed"),
                                    hint=f"full log: {log}")
            base = Interpreter(str(build / "bin" / "python"), "")
            marker = describe(build, self.kind, base, self.tool_env(spec))
            done(f"{len(marker['packages'])} package(s) installed")
        return cache.publish(key, build, marker)


def _uv_lock(spec: EnvSpec) -> Path | None:
    if spec.request.kind not in ("python_env", "none"):
        return None
    path = spec.project_dir / UV_LOCK
    if path.is_file() and (spec.project_dir / "pyproject.toml").is_file():
        return path
    return None
