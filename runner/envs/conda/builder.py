"""The ``conda`` manager: conda.yaml solved and installed in-process by py-rattler; no conda needed.

``lock``: a project that ships ``conda-lock.yml`` is installed from it as it is. Otherwise the
request key (``runner.envs.conda.request``) selects a cached lock; without one (or with ``refresh``)
rattler solves the conda specs, uv resolves the ``pip:`` list for the solved python
(``uv pip compile --format pylock.toml``: one hashed artifact per package), and the result is
written as ``conda-lock.yml``. ``ensure``: the lock's content key selects a cached prefix; a miss
installs the locked conda packages (no solve) into a fresh build directory, then the locked pip
artifacts with ``uv pip install --require-hashes``, records the activation, and publishes the
prefix atomically, exactly like Python environments (``runner.envs.cache``, under ``conda/``).
A cache hit reads one JSON marker and imports neither rattler nor conda-lock.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from runner.envs.base import CondaFacts, EnvSpec, Lock, PythonFacts, ResolvedEnv
from runner.envs.cache import CachedEnv, PythonCache, cache_root
from runner.envs.conda.activate import activation
from runner.envs.conda.lock import (
    LOCK_FILENAME,
    LockFacts,
    PipPackage,
    pip_packages_from_pylock,
    pip_requirements,
    read_facts,
)
from runner.envs.conda.request import CondaRequest, current_subdir, make_conda_request
from runner.envs.progress import Progress
from runner.envs.python import explain, log_path, run_logged, uv_bin
from runner.errors import EnvBuildError, NotSupportedError, Problem, SpecError
from runner.fsutil import sha256_bytes

WAITING = "waiting for another reprun that is building this environment"
CACHE_KIND = "conda"


class CondaBuilder:
    kind: ClassVar[str] = "conda"

    # --- the contract ------------------------------------------------------------------------

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        shipped = spec.project_dir / LOCK_FILENAME
        if not refresh and shipped.is_file():
            Progress(spec.notify, spec.live).say(f"installing from the project's {LOCK_FILENAME} "
                                                 "(no solve; --refresh solves conda.yaml again)")
            return Lock(self.kind, LOCK_FILENAME, shipped.read_text(encoding="utf-8"))
        cache = self.cache(spec)
        request = self.request(spec)
        progress = Progress(spec.notify, spec.live)

        def solve() -> str:
            from runner.envs.conda import solve  # noqa: F401  (a missing extra fails here)

            with progress.phase(f"solving {len(request.specs)} conda spec(s) with rattler") as done:
                text = self._solve(spec, request, cache)
                facts = read_facts(text)
                done(f"{len(facts.conda)} conda and {len(facts.pip)} pip package(s) locked")
            return text

        text = cache.lock_text(request.key, solve, refresh, on_wait=lambda: progress.say(WAITING))
        return Lock(self.kind, LOCK_FILENAME, text)

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        cache = self.cache(spec)
        key = self.env_key(lock)
        progress = Progress(spec.notify, spec.live)
        entry = cache.find_or_build(key, lambda: self._build(spec, lock, cache, key, progress),
                                    on_wait=lambda: progress.say(WAITING))
        cache.touch(entry, spec.project_dir)
        return self.resolved(spec, lock, entry)

    # --- helpers ------------------------------------------------------------------------------

    def cache(self, spec: EnvSpec) -> PythonCache:
        return PythonCache(cache_root(spec.base_env), CACHE_KIND)

    def request(self, spec: EnvSpec) -> CondaRequest:
        env_file = spec.request.conda_env
        if env_file is None:
            raise NotSupportedError(
                f"--env-manager conda needs a conda.yaml, and this project's environment is "
                f"'{spec.request.kind}'", hint="add conda_env: conda.yaml to the MLproject file")
        return make_conda_request(env_file, spec.request.file, spec.project_dir,
                                  spec.conda_channels, spec.base_env)

    def env_key(self, lock: Lock) -> str:
        return sha256_bytes(f"{self.kind}\n{lock.content}".encode())

    def _solve(self, spec: EnvSpec, request: CondaRequest, cache: PythonCache) -> str:
        from runner.envs.conda.lock import write_lock
        from runner.envs.conda.solve import solve, solver_name

        solved = solve(request, cache.root / "repodata")
        pip: list[PipPackage] = []
        if request.pip_lines:
            python = next((r for r in solved.records if r.name.normalized == "python"), None)
            if python is None:
                raise SpecError([Problem(request.file, "dependencies",
                                         "a pip: list needs python among the conda dependencies",
                                         hint="add python (e.g. python=3.11) to dependencies")])
            pip = self._lock_pip(spec, request, str(python.version), cache)
        custom = {"reprun_solver": solver_name(),
                  "reprun_virtual_packages": ", ".join(solved.virtual_packages)}
        return write_lock(request, solved.records, pip, solved.channel_urls, custom)

    def _lock_pip(self, spec: EnvSpec, request: CondaRequest, python: str,
                  cache: PythonCache) -> list[PipPackage]:
        log = log_path(cache.logs, "pip-resolve", request.key)
        with tempfile.TemporaryDirectory(prefix="reprun-pip-") as tmp:
            infile, outfile = Path(tmp) / "requirements.in", Path(tmp) / "pylock.toml"
            infile.write_text("\n".join(request.pip_lines) + "\n", encoding="utf-8")
            argv = [uv_bin(), "pip", "compile", str(infile), "--format", "pylock.toml",
                    "-o", str(outfile), "--python", sys.executable, "--python-version", python,
                    "--python-platform", uv_platform(request.subdir), "--no-header", "--quiet",
                    "--color", "never"]
            done = run_logged(argv, log, tool_env(spec), cwd=spec.project_dir)
            if not done.ok:
                raise EnvBuildError(explain(done.stderr, "resolving the pip: list failed"),
                                    hint=f"full log: {log}")
            return pip_packages_from_pylock(outfile.read_text(encoding="utf-8"))

    def _build(self, spec: EnvSpec, lock: Lock, cache: PythonCache, key: str,
               progress: Progress) -> CachedEnv:
        from runner.envs.conda.solve import install, records_from_lock

        facts = read_facts(lock.content)
        build = cache.new_build_dir(key)
        log = log_path(cache.logs, "build", key)
        lock_copy = log.with_name(log.stem + "-" + LOCK_FILENAME)
        lock_copy.write_text(lock.content, encoding="utf-8")
        with progress.phase(f"installing {len(facts.conda)} conda package(s) into "
                            f"prefix {key[:12]}") as done:
            records = records_from_lock(lock_copy, current_subdir())
            build.mkdir(parents=True)
            install(records, build.resolve(), cache.root / "pkgs")
            if facts.pip:
                self._install_pip(spec, build, facts, log)
            marker = describe(build, facts, spec.base_env)
            done(f"{len(records)} conda and {len(facts.pip)} pip package(s) installed")
        return cache.publish(key, build, marker)

    def _install_pip(self, spec: EnvSpec, build: Path, facts: LockFacts, log: Path) -> None:
        python = build / "bin" / "python"
        if not python.exists():
            raise EnvBuildError("the conda lock has pip packages but its prefix has no python")
        requirements = log.with_suffix(".pip.txt")
        requirements.write_text(pip_requirements(facts.pip), encoding="utf-8")
        argv = [uv_bin(), "pip", "install", "--python", str(python), "--prefix", str(build),
                "--no-deps", "--require-hashes", "-r", str(requirements), "--color", "never"]
        done = run_logged(argv, log, tool_env(spec))
        if not done.ok:
            raise EnvBuildError(explain(done.stderr, "installing the pip packages failed"),
                                hint=f"full log: {log}")

    def resolved(self, spec: EnvSpec, lock: Lock, entry: CachedEnv) -> ResolvedEnv:
        marker = entry.marker
        prefix = entry.path
        packages = tuple((str(n), str(v)) for n, v in marker.get("packages", []))
        python = prefix / "bin" / "python"
        facts = PythonFacts(marker.get("python_version") or None,
                            str(python) if python.exists() else None, packages)
        act = marker.get("activation", {})
        variables = {str(k): str(v) for k, v in act.get("variables", {}).items()}
        env_file = spec.request.conda_env
        if env_file is not None:
            variables.update(env_file.variables)
        conda = marker.get("conda", {})
        return ResolvedEnv(
            self.kind, lock, entry.key, facts,
            path_prepend=tuple(str(p) for p in act.get("path", [str(prefix / "bin")])),
            variables=variables,
            conda=CondaFacts(solver=str(conda.get("solver", "")),
                             channels=tuple(conda.get("channels", [])),
                             platform=str(conda.get("platform", "")),
                             virtual_packages=tuple(conda.get("virtual_packages", [])),
                             prefix=str(prefix)),
        )


def describe(build: Path, facts: LockFacts, env: Any) -> dict[str, Any]:
    """The completeness marker: packages, activation, the conda-meta files that must remain."""
    meta = sorted(p.relative_to(build).as_posix() for p in (build / "conda-meta").glob("*.json"))
    if len(meta) < len(facts.conda):
        raise EnvBuildError(f"the new prefix {build} lacks conda-meta records "
                            f"({len(meta)} of {len(facts.conda)})")
    path, variables = activation(build, env)
    packages = [*facts.conda, *((p.name, p.version) for p in facts.pip)]
    has_python = (build / "bin" / "python").exists()
    return {
        "manager": "conda",
        "python": "bin/python" if has_python else None,
        "python_version": facts.python_version or "-",
        "packages": [list(p) for p in sorted(packages, key=lambda p: p[0].lower())],
        "files": meta,
        "activation": {"path": path, "variables": variables},
        "conda": {"solver": facts.custom.get("reprun_solver", ""),
                  "channels": list(facts.channels), "platform": facts.platform,
                  "virtual_packages": [v.strip() for v in facts.custom.get(
                      "reprun_virtual_packages", "").split(",") if v.strip()]},
    }


def tool_env(spec: EnvSpec) -> dict[str, str]:
    """The caller's environment for uv, without an active virtual environment."""
    env = {k: v for k, v in spec.base_env.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env["UV_NO_PROGRESS"] = "1"
    return env


_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def uv_platform(subdir: str) -> str:
    """uv's --python-platform for a conda subdir (manylinux from this machine's glibc)."""
    import platform

    fixed = {"osx-64": "x86_64-apple-darwin", "osx-arm64": "aarch64-apple-darwin",
             "win-64": "x86_64-pc-windows-msvc"}
    if subdir in fixed:
        return fixed[subdir]
    arch = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}.get(subdir)
    if arch is None:
        return "linux"
    libc, version = platform.libc_ver()
    try:
        minor = int(version.split(".")[1]) if libc == "glibc" else 17
    except (IndexError, ValueError):
        minor = 17
    best = max(m for m in _MANYLINUX if m <= max(minor, 17))
    return f"{arch}-manylinux_2_{best}"
