"""Environment builders, registered by name. Modules are imported only when a kind is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.errors import NotSupportedError

if TYPE_CHECKING:
    from runner.envs.base import EnvironmentBuilder

BUILDERS: dict[str, str] = {
    "local": "runner.envs.local:LocalBuilder",
    "uv": "runner.envs.uv:UvBuilder",
    "virtualenv": "runner.envs.virtualenv:VirtualenvBuilder",
    "docker": "runner.envs.image:ImageBuilder",
    "conda": "runner.envs.conda:CondaBuilder",
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
