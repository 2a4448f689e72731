"""Environment builders, registered by name. Modules are imported only when a kind is used.

- ``base``: the contract (``EnvironmentBuilder``: ``lock`` then ``ensure``), ``EnvSpec``, ``Lock``,
  ``ResolvedEnv``.
- ``cache``: the content-addressed cache of locks and environments, shared by every kind.
- ``local``: the ``local`` manager (the interpreter as it is, nothing built).
- ``pyfacts``: what an interpreter says it is and has installed, asked once and remembered.
- ``image``: the ``docker`` manager (a docker_env's image, built by the Docker backend).
- ``python/``: the ``uv`` and ``virtualenv`` managers and their hashed lock.
- ``conda/``: the ``conda`` manager (py-rattler) and conda.yaml installed from PyPI.
- ``early``: a python_env resolved in the background while the project is still being validated.
- ``progress``: progress of resolving and installing (a spinner on a terminal, else plain lines).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.errors import NotSupportedError

if TYPE_CHECKING:
    from runner.envs.base import EnvironmentBuilder

BUILDERS: dict[str, str] = {
    "local": "runner.envs.local:LocalBuilder",
    "uv": "runner.envs.python.uv:UvBuilder",
    "virtualenv": "runner.envs.python.virtualenv:VirtualenvBuilder",
    "docker": "runner.envs.image:ImageBuilder",
    "conda": "runner.envs.conda.builder:CondaBuilder",
}
PLANNED: tuple[str, ...] = ()


def get_builder(manager: str) -> EnvironmentBuilder:
    """The builder registered under ``manager``."""
    target = BUILDERS.get(manager)
    if target is None:
        available = ", ".join(BUILDERS)
        if manager in PLANNED:
            raise NotSupportedError(
                f"--env-manager {manager} is not yet supported",
                hint=f"use one of: {available}",
            )
        raise NotSupportedError(
            f"unknown --env-manager '{manager}'", hint=f"use one of: {available}"
        )
    module, _, name = target.partition(":")
    builder: EnvironmentBuilder = getattr(importlib.import_module(module), name)()
    return builder
