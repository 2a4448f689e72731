"""The derived image of a run: render the Dockerfile and build context, then build (or reuse) it.

Rendering needs no engine (``--dry-run`` prints it). The build context is a tar made here:

    project/     the project tree minus .git and what .dockerignore excludes
    reprun/      the generated Dockerfile and the environment's lock file, if any

and the Dockerfile puts the environment layers (installing from the lock) before the code layer,
so that a changed source file rebuilds only the last layer. The image is tagged
``reprun/<project>:<content hash>``; the hash covers the base image id and the whole context (which
holds the Dockerfile and the lock), so an unchanged project finds its image and builds nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from backends.docker.container import ContainerSpec
from runner.envs.base import Lock
from runner.errors import BackendError, NotSupportedError
from runner.frozen import frozen

if TYPE_CHECKING:
    from backends.docker.engine import Engine

DOCKERFILE = "reprun/Dockerfile"
ENV_ROOT = "/opt/reprun"
ALWAYS_EXCLUDED = (".git",)
HASH_CHARS = 20


@frozen
class EnvLayer:
    """Dockerfile lines that install an environment from a lock, and the files they need."""

    instructions: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = ()  # paths under reprun/ in the context
    needs_network: bool = True


def requirements_layer(lock: Lock, wheels: tuple[tuple[str, bytes], ...] = ()) -> EnvLayer:
    """A virtual environment at /opt/reprun/venv, installed with pip from a requirements lock.

    With ``wheels`` (the lock's artifacts, fetched on the host) the install needs no network.
    """
    target = f"{ENV_ROOT}/{lock.filename}"
    hashes = " --require-hashes" if "--hash=" in lock.content else ""
    sources = f" --no-index --find-links {ENV_ROOT}/wheels" if wheels else ""
    copy_wheels = (f"COPY reprun/wheels/ {ENV_ROOT}/wheels/",) if wheels else ()
    return EnvLayer(
        instructions=(
            f"COPY reprun/{lock.filename} {target}",
            *copy_wheels,
            f"RUN python3 -m venv {ENV_ROOT}/venv && {ENV_ROOT}/venv/bin/python -m pip install "
            f"--no-cache-dir --disable-pip-version-check --no-deps{hashes}{sources} -r {target}",
            f"ENV VIRTUAL_ENV={ENV_ROOT}/venv PATH={ENV_ROOT}/venv/bin:$PATH",
        ),
        files=((lock.filename, lock.content.encode("utf-8")), *wheels),
        needs_network=not wheels and pins_something(lock),
    )


def pins_something(lock: Lock) -> bool:
    """Whether a requirements lock names any distribution (not only comments and options)."""
    return any(line and not line[0].isspace() and not line.startswith(("#", "-"))
               for line in lock.content.splitlines())


# Lock managers whose lock is a pip requirements file with hashes, installed by
# `requirements_layer`: the Python environment managers lock on the host, the image installs the
# very same lock.
REQUIREMENTS_LOCKS: frozenset[str] = frozenset({"requirements", "uv", "virtualenv"})


# Lock managers whose lock the image can install: requirements locks, and conda-lock.yml
# (`conda_layer`, installed with py-rattler from archives fetched on the host).
IMAGE_LOCKS: frozenset[str] = REQUIREMENTS_LOCKS | {"conda"}


def conda_layer(lock: Lock, env: Mapping[str, str],
                variables: Mapping[str, str] | None = None) -> EnvLayer:
    """A conda prefix at /opt/reprun/conda, installed from ``lock`` with no network.

    ``variables`` (conda.yaml's ``variables:``) are set in the image like the activation's.
    """
    from backends.docker.conda import conda_files, conda_instructions

    subdir, files = conda_files(lock, env)
    wheel = next(name for name, _ in files if name.endswith(".whl")).rsplit("/", 1)[-1]
    instructions = conda_instructions(lock, subdir, wheel, variables or {})
    return EnvLayer(instructions, files, needs_network=False)


def env_layer_for(lock: Lock | None, env: Mapping[str, str],
                  variables: Mapping[str, str] | None = None,
                  project_dir: Path | None = None) -> EnvLayer | None:
    """The layer that installs ``lock`` in the image, or None when the base image is used as is;
    ``project_dir`` anchors the lock's project-relative paths (``# from ./wheels``)."""
    if lock is not None and lock.manager == "conda":
        return conda_layer(lock, env, variables)
    if lock is None or lock.manager not in REQUIREMENTS_LOCKS:
        return None
    if lock.filename == "uv.lock":
        raise NotSupportedError(
            "a project locked by uv.lock cannot run in Docker yet",
            hint="list its dependencies in python_env.yaml instead, or run it locally",
        )
    from backends.docker.wheels import wheel_files, wheels_for

    if not pins_something(lock):
        return requirements_layer(lock, ())
    return requirements_layer(lock, wheel_files(wheels_for(lock, env, project_dir)))


def render_dockerfile(spec: ContainerSpec, base: str, layer: EnvLayer | None) -> str:
    lines = [
        "# Generated by reprun: environment layers first, the project's code last.",
        f"FROM {base}",
        *(layer.instructions if layer else ()),
        f"WORKDIR {spec.workdir}",
        f"COPY project/ {spec.workdir}/",
    ]
    return "\n".join(lines) + "\n"


# --- .dockerignore -------------------------------------------------------------------------


@frozen
class IgnoreRules:
    """The patterns of a .dockerignore file, applied as Docker does (last match wins)."""

    rules: tuple[tuple[re.Pattern[str], bool], ...] = field(default=())

    @classmethod
    def read(cls, directory: Path) -> IgnoreRules:
        path = directory / ".dockerignore"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        rules = [(re.compile(_pattern_regex(p)), False) for p in ALWAYS_EXCLUDED]
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            if pattern in ("", "."):
                continue
            rules.append((re.compile(_pattern_regex(pattern)), negate))
        return cls(tuple(rules))

    @property
    def has_exceptions(self) -> bool:
        return any(negate for _rule, negate in self.rules)

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` (a posix path relative to the project) stays out of the context."""
        parents = [rel]
        while "/" in parents[-1]:
            parents.append(parents[-1].rsplit("/", 1)[0])
        result = False
        for regex, negate in self.rules:
            if any(regex.fullmatch(p) for p in parents):
                result = not negate
        return result


def _pattern_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                out.append("[" + pattern[i + 1:end].replace("\\", "\\\\") + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def context_files(directory: Path) -> Iterator[str]:
    """Relative paths (sorted, posix) of the project files that go into the build context."""
    rules = IgnoreRules.read(directory)
    for root, dirs, files in os.walk(directory):
        rel_root = Path(root).relative_to(directory).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        kept_dirs = []
        for name in sorted(dirs):
            rel = prefix + name
            if not rules.excluded(rel):
                yield rel
                kept_dirs.append(name)
            elif rules.has_exceptions:
                kept_dirs.append(name)  # a later '!' pattern may bring files under it back
        dirs[:] = kept_dirs
        for name in sorted(files):
            if not rules.excluded(prefix + name):
                yield prefix + name


# --- the build context -----------------------------------------------------------------------


@dataclass
class BuildContext:
    """A rendered context: the Dockerfile text and the tar (in a temporary file) with its hash."""

    dockerfile: str
    tar: IO[bytes]
    sha256: str
    needs_network: bool

    def close(self) -> None:
        self.tar.close()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def make_context(
    project_dir: Path, dockerfile: str | None, layer: EnvLayer | None, prefix: str = "project/",
) -> BuildContext:
    """Write the context tar (deterministic: sorted, no times, no owners) and hash it.

    With ``dockerfile`` (text) the tar holds it as reprun/Dockerfile and the lock under reprun/;
    without, it is the bare project tree (to build the project's own Dockerfile).
    """
    extra = [(f"reprun/{n}", d) for n, d in (layer.files if layer else ())]
    if dockerfile is not None:
        extra.insert(0, (DOCKERFILE, dockerfile.encode("utf-8")))
    handle = tempfile.TemporaryFile(prefix="reprun-context-")  # noqa: SIM115 (closed by the caller)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in context_files(project_dir):
            tar.add(project_dir / rel, arcname=prefix + rel, recursive=False, filter=_normalise)
        for name, data in extra:
            _add_bytes(tar, name, data)
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    handle.seek(0)
    needs_network = layer.needs_network if layer else False
    return BuildContext(dockerfile or "", handle, digest.hexdigest(), needs_network)


def content_tag(repository: str, base_id: str, context_sha256: str) -> str:
    digest = hashlib.sha256(f"{base_id}\n{context_sha256}\n".encode()).hexdigest()
    return f"{repository}:{digest[:HASH_CHARS]}"


# --- building with the engine ----------------------------------------------------------------


@frozen
class BuiltImage:
    """A derived image: its tag and id, whether it was built now, its digest once pushed."""

    tag: str
    image_id: str
    built: bool
    repo_digest: str | None = None  # set once the image was pushed to a registry


def find_image(engine: Engine, ref: str) -> str | None:
    """The id of the local image ``ref``, or None."""
    found = _image(engine, ref)
    return None if found is None else found.image_id


def _image(engine: Engine, ref: str) -> BuiltImage | None:
    found = engine.inspect_image(ref)
    if found is None:
        return None
    image_id = str(found["Id"])
    digests = found.get("RepoDigests") or []
    return BuiltImage(image_id, image_id, False, str(digests[0]) if digests else None)


def ensure_base(engine: Engine, ref: str) -> str:
    """The id of base image ``ref``, pulled if it is not present; one clear error otherwise."""
    found = find_image(engine, ref)
    if found is not None:
        return found
    from runner.extras import needs_extra

    with needs_extra("docker", "Docker image builds, pulls and pushes"):
        from docker.errors import APIError

    try:
        return str(engine.sdk().images.pull(ref).id)
    except APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0]
        raise BackendError(
            f"base image '{ref}' is not present on the Docker engine and could not be pulled "
            f"({reason})",
            hint="load or build it first (docker load -i FILE), or name another with "
                 "--docker-base-image (docker_env.image for docker_env projects)",
        ) from None


def build(
    engine: Engine, context: BuildContext, tag: str, log_path: Path,
    labels: dict[str, str], notify: Callable[[str], None], dockerfile: str = DOCKERFILE,
) -> BuiltImage:
    """Build ``context`` as ``tag`` unless an image with that tag exists already.

    Finding it is one inspect through the light client; only a build loads the docker SDK.
    """
    existing = _image(engine, tag)
    if existing is not None:
        return BuiltImage(tag, existing.image_id, built=False, repo_digest=existing.repo_digest)
    notify(f"building image {tag} (log: {log_path})")
    stream = engine.sdk().api.build(
        fileobj=context.tar, custom_context=True, dockerfile=dockerfile, tag=tag, rm=True,
        forcerm=True, decode=True, labels=labels,
        network_mode="host" if context.needs_network else "none",
    )
    image_id = _follow_build(stream, log_path) or find_image(engine, tag)
    if image_id is None:
        raise BackendError(f"docker build of {tag} reported success, but the engine lacks it",
                           hint=f"the full build log is {log_path}")
    return BuiltImage(tag, image_id, built=True)


def _follow_build(stream: Iterator[dict[str, Any]], log_path: Path) -> str | None:
    step, image_id = "", None
    with log_path.open("a", encoding="utf-8") as log:
        for item in stream:
            text = str(item.get("stream", ""))
            log.write(text)
            for line in text.splitlines():
                if line.startswith("Step "):
                    step = line.strip()
            if "aux" in item and isinstance(item["aux"], dict) and "ID" in item["aux"]:
                image_id = str(item["aux"]["ID"])
            if "error" in item:
                error = str(item["error"]).strip()
                log.write(f"ERROR: {error}\n")
                where = f" at '{step}'" if step else ""
                raise BackendError(
                    f"docker build failed{where}: {error.splitlines()[0] if error else '?'}",
                    hint=f"the full build log is {log_path}",
                )
    return image_id

