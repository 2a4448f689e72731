"""The environment contract: a spec goes in, a resolved environment with a lock and a key comes out.

A builder first *locks* the request (resolves it into exact pins, hashed), then *ensures* an
environment for that lock exists (building it, or reusing one with the same content key). One module
per kind of environment, registered by name in `runner.envs.BUILDERS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Protocol

from runner.fsutil import sha256_bytes
from runner.spec import EnvRequest

EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class EnvSpec:
    """What to build: the project's request, where the project is, and the caller's environment."""

    request: EnvRequest
    project_dir: Path
    manager: str
    base_env: Mapping[str, str]
    notify: Callable[[str], None] | None = None  # progress lines; None is quiet
    live: bool = False  # progress may redraw (a terminal)
    conda_channels: tuple[str, ...] = ()  # --conda-channel: replaces conda.yaml's channels


@dataclass(frozen=True)
class Lock:
    """A resolved, pinned environment as text, with the name it is saved under beside a record."""

    manager: str
    filename: str
    content: str

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.content.encode("utf-8"))


@dataclass(frozen=True)
class PythonFacts:
    """The interpreter a command finds in an environment, and what is installed for it."""

    version: str | None = None
    executable: str | None = None
    packages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CondaFacts:
    """How a conda prefix was solved: solver, channel URLs (no credentials), platform."""

    solver: str
    channels: tuple[str, ...]
    platform: str
    virtual_packages: tuple[str, ...] = ()
    prefix: str | None = None


@dataclass(frozen=True)
class ResolvedEnv:
    """How to run a command in a built environment, its lock and its content key."""

    manager: str
    lock: Lock
    cache_key: str
    python: PythonFacts = PythonFacts()
    path_prepend: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    conda: CondaFacts | None = None

    def child_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """A new environment dict for a child process: ``base`` plus this environment's settings."""
        env = dict(base)
        env.update(self.variables)
        if self.path_prepend:
            env["PATH"] = os.pathsep.join([*self.path_prepend, base.get("PATH", os.defpath)])
        return env


class EnvironmentBuilder(Protocol):
    kind: ClassVar[str]

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        """Resolve the request into a pinned, hashed lock (reusing a cached one unless refresh)."""
        ...

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        """Build, or reuse by content key, an environment that matches ``lock``."""
        ...
