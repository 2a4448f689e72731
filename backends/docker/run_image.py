"""One run's derived image, shared by the docker and kubernetes backends.

`prepare_run_image` decides everything without building the derived image: the base (pulled, or
built from the project's Dockerfile), the environment layer from the run's lock, the Dockerfile
(saved beside the record) and the deterministic context with its content tag
``reprun/<project>:<hash>``. `build_run_image` then builds it, or finds it by that tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backends.docker.container import ContainerSpec
from backends.docker.image import (
    BuildContext,
    BuiltImage,
    build,
    content_tag,
    ensure_base,
    env_layer_for,
    make_context,
    render_dockerfile,
)
from runner.envs.base import ResolvedEnv
from runner.fsutil import atomic_write_text

if TYPE_CHECKING:
    from backends.docker.engine import Engine

SAVED_DOCKERFILE = "Dockerfile"  # the generated Dockerfile, beside the run's record
BUILD_LOG = "docker-build.log"


@dataclass
class RunImage:
    """One run's derived image, ready to build: its base, Dockerfile, context and content tag."""

    base_ref: str
    base_id: str
    dockerfile: str
    context: BuildContext
    tag: str

    @property
    def content_hash(self) -> str:
        return self.tag.rsplit(":", 1)[1]

    def close(self) -> None:
        self.context.close()


def prepare_run_image(
    engine: Engine, spec: ContainerSpec, workdir: Path, resolved: ResolvedEnv,
    env: Mapping[str, str], run_dir: Path, notify: Callable[[str], None],
) -> RunImage:
    """The base (pulled, or built from the project's Dockerfile), the environment layer from the
    resolved environment's lock, the Dockerfile (saved as run_dir/Dockerfile) and the context;
    nothing else is built.
    """
    log_path = run_dir / BUILD_LOG
    if spec.dockerfile is not None:
        base_ref, base_id = _project_base(engine, spec, workdir, log_path, notify)
    else:
        base_ref = spec.base_image or ""
        base_id = ensure_base(engine, base_ref)
    layer = env_layer_for(resolved.lock, env, resolved.variables, workdir)
    dockerfile = render_dockerfile(spec, base_ref, layer)
    atomic_write_text(run_dir / SAVED_DOCKERFILE, dockerfile)
    context = make_context(workdir, dockerfile, layer)
    return RunImage(base_ref, base_id, dockerfile, context,
                    content_tag(spec.repository, base_id, context.sha256))


def build_run_image(engine: Engine, image: RunImage, spec: ContainerSpec, run_dir: Path,
                    notify: Callable[[str], None]) -> BuiltImage:
    """Build ``image`` (or find it by its content tag)."""
    return build(engine, image.context, image.tag, run_dir / BUILD_LOG, labels(spec), notify)


def labels(spec: ContainerSpec) -> dict[str, str]:
    return {"reprun.project": spec.name}


def _project_base(engine: Engine, spec: ContainerSpec, workdir: Path, log_path: Path,
                  notify: Callable[[str], None]) -> tuple[str, str]:
    """Build the base image from the project's own Dockerfile (reused by content, like the rest)."""
    dockerfile = spec.dockerfile or "Dockerfile"
    context = make_context(workdir, None, None, prefix="")
    try:
        tag = content_tag(f"{spec.repository}-base", dockerfile, context.sha256)
        context.needs_network = True  # a project's Dockerfile may install from a package index
        built = build(engine, context, tag, log_path, labels(spec), notify,
                      dockerfile=dockerfile)
    finally:
        context.close()
    return built.tag, built.image_id
