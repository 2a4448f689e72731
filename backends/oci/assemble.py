"""Assemble an image in a registry: a base (by digest) plus layers, a new config, one manifest.

Nothing is built or pulled locally: the base's manifest and config are read, the new layers are
appended to its layer list and to the config's ``rootfs.diff_ids``, and the config gets the run's
environment, working directory and command. Blobs go to the target repository only when it lacks
them: base layers are mounted from the base's repository when both live on the same registry,
copied (streamed) otherwise; new layers are uploaded. The manifest is written last, so a failed
push never leaves a manifest that names a missing blob.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends.oci.client import Blob, Registry
from backends.oci.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    BaseImage,
    descriptor,
    dumps,
)
from runner.frozen import frozen

EPOCH = "1970-01-01T00:00:00Z"


@frozen
class NewLayer:
    """A layer to append: its digests and size, and its bytes when the registry may lack it."""

    digest: str
    diff_id: str
    size: int
    comment: str
    blob: Callable[[], Blob] | None = None  # None: the target repository holds it already


@frozen
class ConfigChanges:
    env: Mapping[str, str]
    workdir: str | None = None
    cmd: Sequence[str] | None = None
    labels: Mapping[str, str] | None = None


@frozen
class Assembled:
    reference: str  # repository@digest
    digest: str
    config_digest: str  # what Docker calls the image id
    pushed: bool  # the manifest was new to the target
    blobs_uploaded: int
    bytes_uploaded: int
    blobs_mounted: int


def new_config(base: BaseImage, layers: Sequence[NewLayer], changes: ConfigChanges,
               ) -> dict[str, Any]:
    config = {k: v for k, v in base.config.items() if k not in ("container_config", "container")}
    inner = dict(config.get("config") or {})
    env = [str(item) for item in inner.get("Env") or []]
    env = [item for item in env if item.split("=", 1)[0] not in changes.env]
    env += [f"{k}={v.replace('$PATH', _base_path(base.config))}" for k, v in changes.env.items()]
    inner["Env"] = env
    if changes.workdir:
        inner["WorkingDir"] = changes.workdir
    if changes.cmd is not None:
        inner["Cmd"] = list(changes.cmd)
        inner.pop("Entrypoint", None)
    if changes.labels:
        inner["Labels"] = {**(inner.get("Labels") or {}), **changes.labels}
    config["config"] = inner
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *(lay.diff_id for lay in layers)]
    config["rootfs"] = rootfs
    history = list(config.get("history") or [])
    history += [{"created": EPOCH, "created_by": f"reprun: {lay.comment}"} for lay in layers]
    config["history"] = history
    return config


def _base_path(config: Mapping[str, Any]) -> str:
    for item in (config.get("config") or {}).get("Env") or []:
        if str(item).startswith("PATH="):
            return str(item)[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def assemble(base: BaseImage, base_registry: Registry, target: Registry, repository: str,
             name: str, tag: str, layers: Sequence[NewLayer], changes: ConfigChanges,
             ) -> Assembled:
    """Write ``base`` + ``layers`` to ``target``/``repository``, tagged ``tag``."""
    config = dumps(new_config(base, layers, changes))
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    oci = base.is_oci
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": descriptor(OCI_CONFIG if oci else DOCKER_CONFIG, config_digest, len(config)),
        "layers": [*base.layers, *(descriptor(OCI_LAYER if oci else DOCKER_LAYER, lay.digest,
                                              lay.size) for lay in layers)],
    }
    body = dumps(manifest)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    reference = f"{name}@{digest}"
    if target.manifest_digest(repository, digest) == digest:
        return Assembled(reference, digest, config_digest, False, 0, 0, 0)
    before = target.bytes_sent
    uploaded = mounted = 0
    same_registry = base_registry.host == target.host
    for item in base.layers:
        blob_digest = str(item["digest"])
        if target.has_blob(repository, blob_digest):
            continue
        if same_registry and base.ref.repository != repository and target.mount_blob(
                repository, blob_digest, base.ref.repository):
            mounted += 1
            continue
        _copy(base_registry, base.ref.repository, target, repository, blob_digest,
              int(item.get("size") or 0))
        uploaded += 1
    for lay in layers:
        if lay.blob is not None and not target.has_blob(repository, lay.digest):
            target.upload_blob(repository, lay.blob())
            uploaded += 1
    if not target.has_blob(repository, config_digest):
        target.upload_blob(repository, Blob(config_digest, len(config), data=config))
        uploaded += 1
    media = str(manifest["mediaType"])
    target.put_manifest(repository, tag, body, media)
    return Assembled(reference, digest, config_digest, True, uploaded,
                     target.bytes_sent - before, mounted)


def _copy(source: Registry, source_repo: str, target: Registry, target_repo: str,
          digest: str, size: int) -> None:
    """Stream a blob from one registry to another through a temporary file."""
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="reprun-blob-") as tmp:
        path = Path(tmp) / "blob"
        with source.open_blob(source_repo, digest) as stream, path.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        target.upload_blob(target_repo, Blob(digest, size or path.stat().st_size, path=path))
