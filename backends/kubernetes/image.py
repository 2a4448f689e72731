"""Which image a Kubernetes Job runs: always a reference pinned by digest (``name@sha256:...``).

Two ways to get one:

- *existing image*: the backend config's ``image`` (a tag or a digest). Nothing is built or pushed;
  a tag is resolved to its digest by asking the registry (HTTP API v2).
- *built image*: an `ImageBuilder` turns the run's plan (project directory, resolved environment,
  ``docker_env`` base image) into an image pushed to ``repository-uri`` and returns it pinned.
  `backends.kubernetes.build.build_and_push` builds it with the Docker backend's machinery and
  pushes
  only what the registry lacks (by content tag and digest); it is found by the dotted name in
  `IMAGE_BUILDER` and imported lazily. `backends.kubernetes.assemble.assemble_and_push`
  assembles it through the registry's HTTP API with no Docker engine (`REGISTRY_BUILDER`).
  ``image_builder`` in the backend config chooses; by default the Docker builder is used when
  an engine answers, else the registry builder. The choice and its reason are printed once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from backends.kubernetes.config import KubernetesConfig
from backends.kubernetes.registry import parse_reference, resolve_digest
from runner.envs.base import ResolvedEnv
from runner.errors import BackendError, NotSupportedError, UsageError
from runner.frozen import frozen

if TYPE_CHECKING:
    from backends.docker.container import ContainerSpec

# "module:function" of the ImageBuilder (the Docker machinery: backends/kubernetes/build.py).
IMAGE_BUILDER: str | None = "backends.kubernetes.build:build_and_push"
REGISTRY_BUILDER = "backends.kubernetes.assemble:assemble_and_push"
_SAID: set[str] = set()


def _quiet(_message: str) -> None:
    return None


@frozen
class ImageRequest:
    """What to put in an image for one run."""

    run_id: str
    project_name: str
    project_dir: Path
    env_kind: str
    resolved_env: ResolvedEnv
    base_image: str | None
    repository_uri: str | None
    container: ContainerSpec | None = None  # how the docker backend would build it
    config_base_image: str | None = None  # the backend config's base_image
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    run_dir: Path | None = None  # where the Dockerfile and the build log are saved
    notify: Callable[[str], None] = _quiet
    command: str | None = None  # the run's command (the assembled image's Cmd)
    platform: str = "linux/amd64"  # the nodes' platform (the registry builder's base variant)
    insecure_registries: tuple[str, ...] = ()
    config: KubernetesConfig | None = None  # the backend config (the environment build Job's)


@frozen
class PinnedImage:
    """An image the cluster can pull, by digest."""

    reference: str
    digest: str | None
    source: str  # "existing" or "built"
    pushed: bool = False
    built: bool = False  # an image was built for this run (not found by its content tag)
    facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class ImageBuilder(Protocol):
    def __call__(self, request: ImageRequest) -> PinnedImage:
        """Build (or reuse by content) the run's image, push it if the registry lacks it."""
        ...


def pinned_image(config: KubernetesConfig, request: ImageRequest, resolve: bool) -> PinnedImage:
    """The image of the run; ``resolve=False`` (``--dry-run``) contacts no registry."""
    if config.image:
        if not resolve:
            parsed = parse_reference(config.image)
            return PinnedImage(config.image, parsed.digest, "existing")
        ref = resolve_digest(config.image)
        return PinnedImage(ref.pinned, ref.digest, "existing")
    if IMAGE_BUILDER is None:
        raise NotSupportedError(
            f"no image for project '{request.project_name}': building project images for "
            "Kubernetes needs the docker backend, which this version does not have",
            hint="set 'image' in the backend config to an image that holds the project",
        )
    if not request.repository_uri:
        raise UsageError("'repository-uri' is missing from the backend config",
                         hint="name the registry repository the project's image is pushed "
                              "to, or set 'image' to run an existing image")
    way, reason = choose_builder(config, request.env)
    line = f"image builder: {way} ({reason})"
    if line not in _SAID:  # once per process (a sweep's trials share it)
        _SAID.add(line)
        request.notify(line)
    if not resolve:
        return PinnedImage(f"{request.repository_uri}@sha256:<built at submit by the {way} "
                           "builder>", None, "built", facts={"image_builder": way,
                                                            "image_builder_reason": reason})
    path = REGISTRY_BUILDER if way == "registry" else IMAGE_BUILDER
    module, _, attr = path.partition(":")
    builder: ImageBuilder = getattr(importlib.import_module(module), attr)
    pinned = builder(request)
    if "image_builder" not in pinned.facts:
        pinned = replace(pinned, facts={"image_builder": way, **pinned.facts})
    return pinned


def choose_builder(config: KubernetesConfig, env: Mapping[str, str]) -> tuple[str, str]:
    """``(docker | registry, why)``: the config's choice, else docker when an engine answers."""
    if config.image_builder is not None:
        return config.image_builder, "image_builder in the backend config"
    from backends.docker.engine import connect

    try:
        engine, _version = connect(env)
    except BackendError:
        from backends.docker.http import address

        where = address(env).host_url
        return "registry", f"no Docker engine answers at {where}"
    engine.close()
    return "docker", f"a Docker engine answers at {engine.where.host_url}"
