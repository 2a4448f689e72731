"""The `ImageBuilder` of the Kubernetes backend: the docker backend's image, pushed by content.

The image is the one ``--backend docker`` builds for the same run (`backends.docker.run_image`):
the same
base, the same environment layer installing the run's lock, the same code layer, reused by its
content tag ``reprun/<project>:<hash>``. It is tagged ``<repository-uri>:<hash>`` and sent to the
registry only when the registry lacks that content:

1. when no local image has the content tag, the registry is asked for the tag ``<hash>``: if it
   holds it, that digest is used and nothing is built or pushed;
2. after a build (or when the image was found locally), the registry is asked for the digest the
   local image was pushed as, then for the content tag; only when both are absent is it pushed.

The Job then runs ``<repository-uri>@sha256:<digest>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from backends.docker.engine import connect
from backends.docker.run_image import SAVED_DOCKERFILE, RunImage, build_run_image, prepare_run_image
from backends.kubernetes.image import ImageRequest, PinnedImage
from backends.kubernetes.registry import ImageRef, Registry, RegistryDenied, parse_reference
from runner.envs.python import redact_text
from runner.errors import BackendError, UsageError
from runner.redact import redact_url

if TYPE_CHECKING:
    from backends.docker.engine import Engine

NO_ENGINE = "; or set 'image' in the backend config to run an existing image without building"


def build_and_push(request: ImageRequest) -> PinnedImage:
    """Build (or reuse by content) the run's image and push it if the registry lacks it."""
    spec = request.container
    if spec is None or request.run_dir is None or request.repository_uri is None:
        raise BackendError("the kubernetes backend was given no container settings to build")
    if spec.default_base and request.config_base_image:
        from dataclasses import replace

        spec = replace(spec, base_image=request.config_base_image, default_base=False)
    target = _target(request.repository_uri)
    engine, _version = connect(request.env, also=NO_ENGINE)
    image = prepare_run_image(engine, spec, request.project_dir, request.resolved_env,
                              request.env, request.run_dir, request.notify)
    facts = {"image_tag": f"{target.name}:{image.content_hash}", "base_image": image.base_ref,
             "base_image_id": image.base_id, "dockerfile": SAVED_DOCKERFILE}
    try:
        local = _local_id(engine, image.tag)
        if local is None:
            remote = _lookup(target, image.content_hash)
            if remote is not None:
                return PinnedImage(f"{target.name}@{remote}", remote, "built", facts=facts)
        built = build_run_image(engine, image, spec, request.run_dir, request.notify)
    finally:
        image.close()
    facts["image_id"] = built.image_id
    digest, pushed = _push_if_missing(engine, built.image_id, target, image, request)
    return PinnedImage(f"{target.name}@{digest}", digest, "built", pushed=pushed,
                       built=built.built, facts=facts)


def _target(repository_uri: str) -> ImageRef:
    target = parse_reference(repository_uri)
    if target.tag or target.digest:
        raise UsageError(f"repository-uri '{redact_url(repository_uri)}' names a tag or digest",
                         hint="give the repository only; reprun tags images by content")
    return target


def _local_id(engine: Engine, tag: str) -> str | None:
    from backends.docker.image import find_image

    return find_image(engine, tag)


def _lookup(target: ImageRef, reference: str) -> str | None:
    """The digest of ``reference`` (a tag or a digest) in the target repository, or None.

    None too when the registry wants credentials this client lacks: the push, made by the Docker
    engine with its own credentials, decides then.
    """
    try:
        return Registry(target.registry).manifest_digest(target.repository, reference)
    except RegistryDenied:
        return None
    except BackendError as exc:
        raise BackendError(f"repository-uri '{target.name}': {exc.message}",
                           hint="check the registry address, that it runs and is reachable "
                                "from here") from None


def _push_if_missing(engine: Engine, image_id: str, target: ImageRef, image: RunImage,
                     request: ImageRequest) -> tuple[str, bool]:
    """The digest of the image in the registry and whether it was pushed now."""
    local = engine.inspect_image(image_id) or {}
    prefix = f"{target.name}@"
    for repo_digest in local.get("RepoDigests") or []:
        known = str(repo_digest)
        if known.startswith(prefix):
            digest = known.removeprefix(prefix)
            if _lookup(target, digest) == digest:
                return digest, False
    remote = _lookup(target, image.content_hash)
    if remote is not None:
        return remote, False
    engine.tag_image(image_id, target.name, image.content_hash)
    request.notify(f"pushing {target.name}:{image.content_hash}")
    return _push(engine, target, image.content_hash), True


def _push(engine: Engine, target: ImageRef, tag: str) -> str:
    from runner.extras import needs_extra

    with needs_extra("docker", "Docker image builds, pulls and pushes"):
        from docker.errors import DockerException

    digest: str | None = None
    try:
        for item in engine.sdk().api.push(target.name, tag=tag, stream=True, decode=True):
            if "error" in item:
                _push_failed(target, str(item["error"]))
            aux: Any = item.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except DockerException as exc:
        _push_failed(target, str(getattr(exc, "explanation", None) or exc))
    digest = digest or _lookup(target, tag)
    if digest is None:
        raise BackendError(f"pushed {target.name}:{tag}, but the registry does not list it")
    return digest


def _push_failed(target: ImageRef, error: str) -> NoReturn:
    first = error.strip().splitlines()[0] if error.strip() else "no reason given"
    raise BackendError(
        f"pushing the image to '{target.name}' failed: {redact_text(first)}",
        hint=f"check that you may push to {target.registry} (docker login {target.registry}) "
             "and that it is reachable",
    )
