"""Execution backends, registered by name. Modules are imported only when a backend is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import NotSupportedError

if TYPE_CHECKING:
    from backends.base import Backend, RemoteBackend

BACKENDS: dict[str, str] = {
    "local": "backends.local:LocalBackend",
    "docker": "backends.docker.backend:DockerBackend",
    "kubernetes": "backends.kubernetes.backend:KubernetesBackend",
    "slurm": "backends.slurm.backend:SlurmBackend",
}
PLANNED: tuple[str, ...] = ()
# Backends that install the locked environment themselves (into an image): the host only locks.
BUILDS_OWN_ENVIRONMENT = frozenset({"docker", "kubernetes"})
# Backends whose runs live elsewhere: they can be previewed, refreshed, detached and cancelled.
REMOTE_BACKENDS = frozenset({"kubernetes", "slurm"})
# Backends that submit the trials of a sweep together (RunRequest.array): a Slurm job array.
ARRAY_BACKENDS = frozenset({"slurm"})
# Backends that need the libraries of an extra for every run: (extra, what needs it). The docker
# backend is not one: it needs the docker SDK only to build, pull or push an image.
NEEDS_EXTRA: dict[str, tuple[str, str]] = {"kubernetes": ("kubernetes", "Kubernetes runs")}


def check_installed(name: str) -> None:
    """One line naming ``pip install 'reprun[EXTRA]'`` when backend ``name`` lacks its extra."""
    if name in NEEDS_EXTRA:
        from runner.extras import require

        require(*NEEDS_EXTRA[name])


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


def fixed_image(name: str, backend_config: str | None, cwd: Path) -> str | None:
    """The existing image a remote backend's config names (its runs then build nothing)."""
    if name != "kubernetes" or not backend_config:
        return None
    from backends.kubernetes.config import load_config

    return load_config(backend_config, cwd).config.image or None


def check_backend(name: str, backend_config: str | None, cwd: Path,
                  env: Mapping[str, str]) -> str | None:
    """Refuse, before anything is recorded, a run the backend cannot submit; returns the
    environment manager its config names (if any)."""
    if name != "slurm":
        return None
    from backends.slurm.setup import check

    return check(backend_config, cwd, env)


def environment_env(name: str, backend_config: str | None, cwd: Path,
                    env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment an environment is built with: a backend whose nodes share a file system
    with reprun (slurm) has it built there."""
    if name != "slurm":
        return env
    from backends.slurm.setup import build_env

    return build_env(backend_config, cwd, env)


def image_python(name: str, base_image: str | None, env: Mapping[str, str]) -> str | None:
    """The Python version of the base image a docker run installs its lock into (asked of the
    image once per image id, then cached); None for other backends, a base built from a
    project's Dockerfile, or an image without python3."""
    if name != "docker" or not base_image:
        return None
    from backends.docker.engine import connect
    from backends.docker.image import ensure_base
    from backends.docker.interpreter import image_python as ask

    engine, _ = connect(env)
    try:
        return ask(engine, ensure_base(engine, base_image), env)
    finally:
        engine.close()


def remote_backend(name: str) -> RemoteBackend | None:
    """The backend ``name`` if its runs live elsewhere (and can be refreshed or cancelled)."""
    from backends.base import RemoteBackend

    if name not in REMOTE_BACKENDS:
        return None
    backend = get_backend(name)
    return backend if isinstance(backend, RemoteBackend) else None
