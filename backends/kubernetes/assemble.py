"""The registry `ImageBuilder`: the run's image assembled through the registry's HTTP API alone.

No Docker engine and no docker package: the base image (``--docker-base-image``, the config's
``base_image`` or the docker_env image) is read from its registry and pinned by digest for the
config's ``platform``; the environment layer (`backends.kubernetes.envlayer`) and a layer of the
project's code (its files at the run's commit and patch, or its snapshot, minus ``.git`` and what
``.dockerignore`` excludes, at the container's working directory) are appended; the config gets
the environment's variables, the working directory and the command. Only the blobs the target
repository lacks are sent. The image is tagged by content and run by digest, as the Docker
builder's is, and its record has the same fields.
"""

from __future__ import annotations

from backends.kubernetes.envlayer import SITE, env_layer, needs_layer
from backends.kubernetes.image import ImageRequest, PinnedImage
from backends.oci.assemble import ConfigChanges, NewLayer, assemble
from backends.oci.client import Registry
from backends.oci.layers import Layer, tree_files, write_layer
from backends.oci.manifest import Platform, resolve_base
from backends.oci.reference import parse_reference
from runner.errors import BackendError, NotSupportedError, UsageError
from runner.redact import redact_url

HASH_CHARS = 20


def assemble_and_push(request: ImageRequest) -> PinnedImage:
    """Assemble the run's image in the registry (pushing only what it lacks), pinned by digest."""
    spec = request.container
    if spec is None or request.repository_uri is None:
        raise BackendError("the kubernetes backend was given no container settings to build")
    if spec.dockerfile is not None:
        raise NotSupportedError(
            f"docker_env.build of project '{request.project_name}' needs a Docker engine to "
            "build its Dockerfile; the registry image builder cannot",
            hint="use image_builder: docker, or push the image yourself and name it in "
                 "docker_env.image")
    base_name = (request.config_base_image if spec.default_base and request.config_base_image
                 else spec.base_image) or ""
    target = parse_reference(request.repository_uri)
    if target.tag or target.digest:
        raise UsageError(f"repository-uri '{redact_url(request.repository_uri)}' names a tag "
                         "or digest", hint="give the repository only; reprun tags by content")
    platform = Platform.parse(request.platform)
    base_ref = parse_reference(base_name)
    registry = _registry(target.registry, request)
    base_registry = (registry if base_ref.registry == target.registry
                     else _registry(base_ref.registry, request))
    try:
        base = resolve_base(base_registry, base_ref, platform)
    except BackendError as exc:
        if "cannot reach" in exc.message and base_ref.registry != target.registry:
            raise BackendError(f"base image '{base_name}': {exc.message}",
                               hint="the registry builder reads the base image from its "
                                    "registry: push it to one reprun can reach") from None
        raise
    layers: list[NewLayer] = []
    env_vars: dict[str, str] = {}
    built_env: str | None = None
    lock = request.resolved_env.lock
    if needs_layer(lock):
        layer, built_env = env_layer(lock, base, platform, registry, target.repository, request)
        layers.append(layer)
        env_vars = {"PYTHONPATH": SITE, "PATH": f"{SITE}/bin:$PATH"}
    env_vars.update(dict(request.resolved_env.variables))
    env_vars.update(dict(spec.set_env))
    code = _code_layer(request, spec.workdir)
    try:
        layers.append(NewLayer(code.digest, code.diff_id, code.size, "the project's code",
                               blob=code.blob))
        command = spec.argv(request.command) if request.command is not None else None
        changes = ConfigChanges(env_vars, spec.workdir, command,
                                {"reprun.project": spec.name})
        tag = _content_tag(base.digest, [lay.digest for lay in layers], request)
        done = assemble(base, base_registry, registry, target.repository, target.name, tag,
                        layers, changes)
    finally:
        code.close()
    if done.pushed:
        request.notify(f"pushed {target.name}@{done.digest} ({done.blobs_uploaded} blobs, "
                       f"{done.bytes_uploaded} bytes)")
    facts = {"image_builder": "registry", "image_tag": f"{target.name}:{tag}",
             "base_image": base_name, "base_image_id": f"{base_ref.name}@{base.digest}",
             "dockerfile": None, "image_id": done.config_digest, "platform": str(platform),
             "image_bytes_pushed": done.bytes_uploaded, "env_layer_built": built_env is not None,
             "env_layer_built_where": built_env}
    return PinnedImage(done.reference, done.digest, "built", pushed=done.pushed,
                       built=done.pushed, facts=facts)


def _registry(host: str, request: ImageRequest) -> Registry:
    registry = Registry(host, request.env, request.insecure_registries)
    registry.notify = request.notify
    return registry


def _code_layer(request: ImageRequest, workdir: str) -> Layer:
    from backends.docker.image import context_files

    names = list(context_files(request.project_dir))
    return write_layer(tree_files(request.project_dir, workdir, names))


def _content_tag(base_digest: str, layers: list[str], request: ImageRequest) -> str:
    import hashlib

    text = "\n".join([base_digest, *layers, request.command or ""]) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
