"""The ``local`` manager: run in the caller's environment and record the Python it provides."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from runner.envs.base import EnvSpec, Lock, PythonFacts, ResolvedEnv, facts_drift
from runner.errors import LockNotHonouredError


def inspect_python(python: str, env: dict[str, str], cwd: Path | None = None) -> PythonFacts:
    """Ask ``python`` what it is and what it has installed; empty facts if it cannot answer."""
    from runner.envs.pyfacts import inspect

    return inspect(python, env, cwd)[0]


def freeze(facts: PythonFacts) -> str:
    lines = [f"# python {facts.version} at {facts.executable}"]
    lines += [f"{name}=={version}" for name, version in facts.packages]
    return "\n".join(lines) + "\n"


def thaw(content: str) -> PythonFacts:
    """The facts a ``local-packages.txt`` written by :func:`freeze` holds."""
    version = executable = None
    packages = []
    for line in content.splitlines():
        if line.startswith("# python "):
            version, _, executable = line.removeprefix("# python ").partition(" at ")
        elif "==" in line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            packages.append((name.strip(), pinned.strip()))
    return PythonFacts(None if version in (None, "None") else version, executable or None,
                       tuple(packages))


class LocalBuilder:
    """Nothing is built; the lock is what the ``python`` on PATH has installed."""

    kind: ClassVar[str] = "local"

    def __init__(self) -> None:
        self._seen: dict[str, PythonFacts] = {}

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        return Lock(self.kind, "local-packages.txt", freeze(self._facts(spec)))

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        """Nothing to build: the interpreter on PATH must have exactly what ``lock`` pins."""
        facts = self._facts(spec)
        if lock.content != freeze(facts):
            drift = facts_drift(thaw(lock.content), facts)
            if drift:
                raise LockNotHonouredError(lock.filename, drift)
        return ResolvedEnv(self.kind, lock, lock.sha256, facts)

    def _facts(self, spec: EnvSpec) -> PythonFacts:
        env = dict(spec.base_env)
        python = shutil.which("python", path=env.get("PATH")) or shutil.which(
            "python3", path=env.get("PATH")
        )
        if python is None:
            return PythonFacts()
        if python not in self._seen:
            from runner.envs.cache import cache_root
            from runner.envs.pyfacts import cached

            self._seen[python] = cached(python, env, cache_root(env))
        return self._seen[python]
