"""The environment layer of a registry-assembled image: the run's lock installed for the image.

The layer holds ``/opt/reprun/site-packages`` (``pip install --target`` of exactly the lock's
pins, with their hashes, from the wheels fetched once per lock) and the image finds it through
``PYTHONPATH``. It is keyed by the lock's hash, the base image's digest and the platform, and
kept in the target repository as a one-layer image tagged ``reprun-env-<key>``: the registry is
asked first, so an unchanged environment is built once for the whole team (and once for all the
trials of a sweep), never again.

It is built on this machine, and only when this machine's platform and Python are the image's
(the wheels pip picks are then the ones the image needs); otherwise the run is refused in one
line. Building it in the cluster, where it runs, is not done yet.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
import re
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

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
              repository: str, env: Mapping[str, str], project_dir: Path,
              notify: Callable[[str], None]) -> tuple[NewLayer, bool]:
    """The environment layer, found in the registry by its key or built here and pushed there;
    and whether it was built now."""
    tag = f"reprun-env-{env_key(lock, base, platform)}"
    found = _cached(target, repository, tag)
    if found is not None:
        return found, False
    image_python = python_of(base, target.host, env, _base_registry(base, target))
    _check_host(platform, image_python)
    notify(f"building the environment layer for {platform}, Python {image_python}, on this "
           "machine (same platform and Python)")
    with tempfile.TemporaryDirectory(prefix="reprun-site-") as tmp:
        site = Path(tmp) / "site"
        _install(lock, env, project_dir, site, Path(tmp))
        layer = write_layer(tree_files(site, SITE))
    try:
        blob = layer.blob()
        target.upload_blob(repository, blob)
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
    return NewLayer(layer.digest, layer.diff_id, layer.size, f"environment {tag}"), True


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


def _check_host(platform: Platform, image_python: str | None) -> None:
    here = host_platform_of()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    same = here.os == platform.os and here.architecture == platform.architecture
    if same and image_python == python:
        return
    what = f"Python {image_python}" if image_python else "a Python reprun could not find"
    raise NotSupportedError(
        f"the environment layer must be built for {platform} with {what}, but this machine is "
        f"{here} with Python {python}; reprun builds it here only when they match",
        hint="run from a machine that matches the image, or use image_builder: docker")


def python_of(base: BaseImage, _host: str, env: Mapping[str, str],
              registry: Registry) -> str | None:
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
    from runner.envs.pylock import anchor_entry, redact_text
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


__all__ = ["SITE", "BackendError", "env_key", "env_layer", "needs_layer", "python_of"]
