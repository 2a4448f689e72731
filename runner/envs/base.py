"""The environment contract: a spec goes in, a resolved environment with a lock and a key comes out.

A builder first *locks* the request (resolves it into exact pins, hashed), then *ensures* an
environment for that lock exists (building it, or reusing one with the same content key). One module
per kind of environment, registered by name in `runner.envs.BUILDERS`.

``ensure`` never resolves: it builds exactly the lock it is given, which may be a lock read back
from an old record (``reprun reproduce``), made on another machine. When it cannot honour an entry
(another platform, a missing interpreter, a package gone from the index) it raises
:class:`~runner.errors.LockNotHonouredError` naming each entry; :func:`restore` then stops, or with
``--allow-drift`` resolves anew and returns the drift for the record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Protocol

from runner.errors import Drift, LockNotHonouredError
from runner.frozen import frozen
from runner.fsutil import sha256_bytes
from runner.spec.project import EnvRequest

if TYPE_CHECKING:
    from runner.envs.python import Compiling

EMPTY: Mapping[str, str] = MappingProxyType({})


@frozen
class EnvSpec:
    """What to build: the project's request, where the project is, and the caller's environment."""

    request: EnvRequest
    project_dir: Path
    manager: str
    base_env: Mapping[str, str]
    notify: Callable[[str], None] | None = None  # progress lines; None is quiet
    live: bool = False  # progress may redraw (a terminal)
    conda_channels: tuple[str, ...] = ()  # --conda-channel: replaces conda.yaml's channels
    resolving: Compiling | None = None  # a resolution started while the project was validated
    target_python: str | None = None  # resolve for this Python version (an image's), not the host's


@frozen
class Lock:
    """A resolved, pinned environment as text, with the name it is saved under beside a record."""

    manager: str
    filename: str
    content: str

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.content.encode("utf-8"))

    @classmethod
    def recorded(cls, manager: str, filename: str, content: str) -> Lock:
        """A lock read back from a record (the text saved beside it, unchanged)."""
        return cls(manager, filename, content)


@frozen
class PythonFacts:
    """The interpreter a command finds in an environment, and what is installed for it."""

    version: str | None = None
    executable: str | None = None
    packages: tuple[tuple[str, str], ...] = ()


@frozen
class CondaFacts:
    """How a conda prefix was solved: solver, channel URLs (no credentials), platform."""

    solver: str
    channels: tuple[str, ...]
    platform: str
    virtual_packages: tuple[str, ...] = ()
    prefix: str | None = None


@frozen
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


def facts_drift(locked: PythonFacts, found: PythonFacts) -> list[Drift]:
    """How ``found`` differs from ``locked``: the interpreter version, then each package."""
    drift = []
    if locked.version and locked.version != found.version:
        drift.append(Drift("python", locked.version, found.version))
    want = {n.lower(): (n, v) for n, v in locked.packages}
    have = {n.lower(): (n, v) for n, v in found.packages}
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            drift.append(Drift(want[key][0], want[key][1], None))
        elif key not in want:
            drift.append(Drift(have[key][0], None, have[key][1]))
        elif want[key][1] != have[key][1]:
            drift.append(Drift(want[key][0], want[key][1], have[key][1]))
    return drift


def restore(builder: EnvironmentBuilder, spec: EnvSpec, lock: Lock | None, allow_drift: bool,
            recorded: PythonFacts) -> tuple[ResolvedEnv, tuple[Drift, ...]]:
    """The environment of a recorded run: built from its ``lock``, never re-resolved.

    With ``allow_drift`` a lock that cannot be honoured is resolved anew and the drift returned.
    Without a lock (a record of another manager, or none) the request is resolved anew and the
    drift is what differs from the ``recorded`` interpreter and packages.
    """
    if lock is not None:
        try:
            return builder.ensure(spec, lock), ()
        except LockNotHonouredError as exc:
            if not allow_drift:
                raise
            drift = exc.drift
        return builder.ensure(spec, builder.lock(spec, refresh=True)), drift
    resolved = builder.ensure(spec, builder.lock(spec, refresh=True))
    if not recorded.version and not recorded.packages:
        return resolved, ()
    return resolved, tuple(facts_drift(recorded, resolved.python))
