"""Execution backends, registered by name. Modules are imported only when a backend is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.errors import NotSupportedError

if TYPE_CHECKING:
    from backends.base import Backend

BACKENDS: dict[str, str] = {
    "local": "backends.local:LocalBackend",
    "docker": "backends.docker:DockerBackend",
}
PLANNED = ("kubernetes",)
# Backends that install the locked environment themselves (into an image): the host only locks.
BUILDS_OWN_ENVIRONMENT = frozenset({"docker"})


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``."""
    target = BACKENDS.get(name)
    if target is None:
        available = ", ".join(BACKENDS)
        what = "is not yet supported" if name in PLANNED else "is not a known backend"
        raise NotSupportedError(f"--backend {name} {what}", hint=f"use one of: {available}")
    module, _, attr = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module), attr)()
    return backend
