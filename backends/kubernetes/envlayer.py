"""The environment layer of a registry-assembled image: the run's lock installed for the image.

The layer holds ``/opt/reprun/site-packages`` (``pip install --target`` of exactly the lock's
pins, with their hashes, from the wheels fetched once per lock) and the image finds it through
``PYTHONPATH``. It is keyed by the lock's hash, the base image's digest and the platform, and
kept in the target repository as a one-layer image tagged ``reprun-env-<key>``: the registry is
asked first, so an unchanged environment is built once for the whole team (and once for all the
trials of a sweep), never again.

Where it is built (``env_build`` in the backend config): in the cluster, by a build Job in the
base image (`backends.kubernetes.envjob`), so it is made for the image's platform and Python
whatever this machine is; or on this machine, only when its platform and Python are the image's
(the wheels pip picks are then the ones the image needs; otherwise ``env_build: local`` is
refused in one line). ``auto`` (the default) builds here when they match, else in the cluster.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
import re
import sys
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from backends.kubernetes.image import ImageRequest
from backends.oci.assemble import NewLayer
from backends.oci.client import Blob, Registry
from backends.oci.layers import tree_files, write_layer
from backends.oci.manifest import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    BaseImage,
    Platform,
    descriptor,
    dumps,
)
from runner.envs.base import Lock
from runner.errors import BackendError, EnvBuildError, NotSupportedError

SITE = "/opt/reprun/site-packages"
FORMAT = "site-packages-v1"  # changes when the layer's layout does
REQUIREMENTS_LOCKS = frozenset({"requirements", "uv", "virtualenv"})
_GUARD = threading.Lock()
_BUILDING: dict[str, threading.Lock] = {}
_PYTHON = re.compile(r"^(?:\./)?usr/(?:local/)?bin/python(3\.\d+)$")


def env_key(lock: Lock, base: BaseImage, platform: Platform) -> str:
    text = f"{FORMAT}\n{lock.sha256}\n{base.digest}\n{platform}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def needs_layer(lock: Lock | None) -> bool:
    """Whether ``lock`` installs anything; refuses the locks this builder cannot install."""
    if lock is None or lock.manager not in REQUIREMENTS_LOCKS | {"conda"}:
        return False
    if lock.manager == "conda" or lock.filename == "uv.lock":
        raise NotSupportedError(
            f"the registry image builder cannot install a {lock.filename} environment yet",
            hint="use image_builder: docker in the backend config (needs a Docker engine)")
    from backends.docker.image import pins_something

    return pins_something(lock)


def env_layer(lock: Lock, base: BaseImage, platform: Platform, target: Registry,
              repository: str, request: ImageRequest) -> tuple[NewLayer, str | None]:
    """The environment layer, found in the registry by its key or built and pushed there; and
    where it was built now (None: found)."""
    tag = f"reprun-env-{env_key(lock, base, platform)}"
    with _GUARD:
        guard = _BUILDING.setdefault(f"{target.host}/{repository}:{tag}", threading.Lock())
    with guard:  # runs of one process at once (threads) build it once
        found = _cached(target, repository, tag)
        if found is not None:
            return found, None
        return _build(lock, base, platform, target, repository, tag, request)


def _build(lock: Lock, base: BaseImage, platform: Platform, target: Registry, repository: str,
           tag: str, request: ImageRequest) -> tuple[NewLayer, str]:
    mode = request.config.env_build if request.config is not None else "local"
    image_python = None if mode == "cluster" else python_of(
        base, request.env, _base_registry(base, target))
    if mode == "local" or (mode == "auto" and host_matches(platform, image_python)):
        _check_host(platform, image_python)
        _build_here(lock, base, platform, target, repository, tag, request, image_python)
        where = "local"
    else:
        _build_in_cluster(lock, base, platform, target, repository, tag, request)
        where = "cluster"
    built = _cached(target, repository, tag)
    if built is None:
        raise BackendError(f"the environment layer {tag} was built but {target.host}/"
                           f"{repository} does not list it")
    return built, where


def _build_in_cluster(lock: Lock, base: BaseImage, platform: Platform, target: Registry,
                      repository: str, tag: str, request: ImageRequest) -> None:
    from backends.docker.wheels import lock_sources
    from backends.kubernetes.envjob import build_job, run_build_job
    from runner.envs.python.lock import anchor_entry

    if request.config is None:
        raise BackendError("the environment build Job needs the backend config")
    anchored = "\n".join(anchor_entry(line, request.project_dir)
                         for line in lock.content.splitlines()) + "\n"
    job = build_job(Lock(lock.manager, lock.filename, anchored), base, platform, target.host,
                    repository, tag, lock_sources(lock, request.project_dir), request.config,
                    request.insecure_registries)
    run_build_job(job, request.config, request.run_dir, request.notify)


def _build_here(lock: Lock, base: BaseImage, platform: Platform, target: Registry,
                repository: str, tag: str, request: ImageRequest,
                image_python: str | None) -> None:
    request.notify(f"building the environment layer for {platform}, Python {image_python}, "
                   "on this machine (same platform and Python)")
    with tempfile.TemporaryDirectory(prefix="reprun-site-") as tmp:
        site = Path(tmp) / "site"
        _install(lock, request.env, request.project_dir, site, Path(tmp))
        layer = write_layer(tree_files(site, SITE))
    try:
        target.upload_blob(repository, layer.blob())
        config = dumps({"architecture": platform.architecture, "os": platform.os,
                        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                        "config": {"Labels": {"reprun.lock-sha256": lock.sha256,
                                              "reprun.base": base.digest}}})
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        target.upload_blob(repository, Blob(config_digest, len(config), data=config))
        manifest = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": descriptor(OCI_CONFIG, config_digest, len(config)),
                          "layers": [descriptor(OCI_LAYER, layer.digest, layer.size)]})
        target.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    finally:
        layer.close()


def _base_registry(base: BaseImage, target: Registry) -> Registry:
    if base.ref.registry == target.host:
        return target
    return Registry(base.ref.registry)


def _cached(target: Registry, repository: str, tag: str) -> NewLayer | None:
    found = target.manifest(repository, tag)
    if found is None:
        return None
    manifest = json.loads(found[1])
    layers = manifest.get("layers") or []
    config = json.loads(target.blob(repository, str(manifest["config"]["digest"])))
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(layers) != 1 or len(diff_ids) != 1:
        return None
    layer = layers[0]
    return NewLayer(str(layer["digest"]), str(diff_ids[0]), int(layer["size"]),
                    f"environment {tag}")


def host_platform_of() -> Platform:
    machine = host_platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return Platform(sys.platform if sys.platform != "darwin" else "darwin", arch)


def host_matches(platform: Platform, image_python: str | None) -> bool:
    """Whether this machine's platform and Python are the image's."""
    here = host_platform_of()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (here.os == platform.os and here.architecture == platform.architecture
            and image_python == python)


def _check_host(platform: Platform, image_python: str | None) -> None:
    if host_matches(platform, image_python):
        return
    here = host_platform_of()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    what = f"Python {image_python}" if image_python else "a Python reprun could not find"
    raise NotSupportedError(
        f"the environment layer must be built for {platform} with {what}, but this machine is "
        f"{here} with Python {python}; reprun builds it here only when they match",
        hint="use env_build: cluster (a build Job in the base image) or image_builder: docker")


def python_of(base: BaseImage, env: Mapping[str, str], registry: Registry) -> str | None:
    """The base image's Python (``major.minor``): its PYTHON_VERSION, else found in its layers
    (``usr[/local]/bin/python3.N``); remembered per base digest."""
    for item in (base.config.get("config") or {}).get("Env") or []:
        if str(item).startswith("PYTHON_VERSION="):
            return ".".join(str(item).split("=", 1)[1].split(".")[:2])
    from runner.envs.cache import cache_root

    memo = cache_root(env) / "oci" / "python" / base.digest.replace(":", "-")
    if memo.is_file():
        return memo.read_text(encoding="utf-8").strip() or None
    found: set[str] = set()
    for layer in base.layers:
        with registry.open_blob(base.ref.repository, str(layer["digest"])) as stream, \
                tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                match = _PYTHON.match(member.name)
                if match:
                    found.add(match.group(1))
    version = max(found, key=lambda v: int(v.split(".")[1])) if found else ""
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(version + "\n", encoding="utf-8")
    return version or None


def _install(lock: Lock, env: Mapping[str, str], project_dir: Path, site: Path,
             tmp: Path) -> None:
    from backends.docker.wheels import wheels_for
    from runner.envs.python.lock import anchor_entry, redact_text
    from runner.process import capture

    wheels = wheels_for(lock, env, project_dir)
    requirements = tmp / lock.filename
    lines = [anchor_entry(line, project_dir) for line in lock.content.splitlines()]
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hashes = ["--require-hashes"] if "--hash=" in lock.content else []
    argv = [sys.executable, "-m", "pip", "install", "--target", str(site), "--no-deps",
            "--no-compile", "--no-index", "--find-links", str(wheels), *hashes,
            "--disable-pip-version-check", "--no-input", "--no-warn-script-location",
            "-r", str(requirements)]
    done = capture(argv, env=env, timeout=3600, contain=True)
    if not done.ok:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "failed")
        raise EnvBuildError(f"installing the lock for the image failed: "
                            f"{redact_text(last.strip())}")
    _portable_scripts(site / "bin")


def _portable_scripts(folder: Path) -> None:
    """Console scripts name this machine's interpreter; the image's is ``python3``."""
    if not folder.is_dir():
        return
    for script in folder.iterdir():
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
            script.write_bytes(b"#!/usr/bin/env python3\n" + rest)


