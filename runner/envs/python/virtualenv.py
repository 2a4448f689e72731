"""The ``virtualenv`` manager: virtualenv (with pip) + ``pip install --require-hashes``.

The request is resolved into the same hashed lock as for ``uv`` (uv is fast and already a
dependency); pip installs from it, reading pip's own configuration. The interpreter is found by
virtualenv's discovery.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from runner.envs.base import EnvSpec
from runner.envs.python.build import PythonBuilder, default_interpreter, interpreter_missing
from runner.envs.python.lock import Interpreter, explain, run_logged
from runner.errors import EnvBuildError


def uv_sources_for_pip(env: Mapping[str, str]) -> list[str]:
    """pip options for the package sources uv was told about, so pip installs from where the
    lock was resolved (pip's own configuration still applies on top)."""
    args: list[str] = []
    index = env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL")
    if index:
        args += ["--index-url", index]
    for name in ("UV_INDEX", "UV_EXTRA_INDEX_URL"):
        for url in env.get(name, "").split():
            args += ["--extra-index-url", url.split("=", 1)[-1] if "=" in url.split("://")[0]
                     else url]
    for location in env.get("UV_FIND_LINKS", "").replace(",", " ").split():
        args += ["--find-links", location]
    return args


class VirtualenvBuilder(PythonBuilder):
    kind: ClassVar[str] = "virtualenv"

    def find_interpreter(self, python: str | None, spec: EnvSpec, logs: Path) -> Interpreter:
        if python is None:
            return default_interpreter()
        from virtualenv.discovery.builtin import get_interpreter

        info = get_interpreter(python, [], env=dict(self.tool_env(spec)))
        if info is None:
            raise interpreter_missing(python, "virtualenv discovery", None, spec)
        version = ".".join(str(part) for part in info.version_info[:3])
        return Interpreter(str(info.system_executable or info.executable), version)

    def create(self, build: Path, interpreter: Interpreter, spec: EnvSpec, log: Path) -> None:
        argv = [sys.executable, "-m", "virtualenv", "--quiet", "--python", interpreter.path,
                str(build)]
        if not run_logged(argv, log, self.tool_env(spec)).ok:
            raise EnvBuildError(f"virtualenv failed for python {interpreter.path}",
                                hint=f"full log: {log}")

    def install(self, build: Path, requirements: Path, local: list[list[str]], spec: EnvSpec,
                log: Path) -> None:
        base = [str(build / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                "--disable-pip-version-check", "--no-input", *uv_sources_for_pip(spec.base_env)]
        steps = [[*base, "--require-hashes", "-r", str(requirements)]] if requirements.name else []
        steps += [[*base, *args] for args in local]
        for argv in steps:
            done = run_logged(argv, log, self.tool_env(spec))
            if not done.ok:
                raise EnvBuildError(explain(done.stderr, "pip install failed"),
                                    hint=f"full log: {log}")
