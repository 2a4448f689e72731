"""Manifests, indexes and image configs: pick the platform, read a base, write a new manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from backends.oci.client import Registry
from backends.oci.reference import ImageRef
from runner.errors import BackendError, UsageError
from runner.frozen import frozen

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)


@frozen
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"platform '{text}' is not os/architecture[/variant]",
                             hint="write e.g. linux/amd64 or linux/arm64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if entry.get("os") != self.os or entry.get("architecture") != self.architecture:
            return False
        return self.variant is None or entry.get("variant") in (None, self.variant)


@frozen
class BaseImage:
    """A base image, resolved for one platform: its manifest, config and layers."""

    ref: ImageRef
    digest: str  # the platform's manifest digest (what a Job would pull)
    media_type: str
    manifest: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def layers(self) -> list[Mapping[str, Any]]:
        return list(self.manifest.get("layers") or [])

    @property
    def is_oci(self) -> bool:
        return self.media_type == OCI_MANIFEST


def _decode(body: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise BackendError(f"{where} is not JSON") from None
    if not isinstance(data, dict):
        raise BackendError(f"{where} is not a JSON object")
    return data


def resolve_base(registry: Registry, ref: ImageRef, platform: Platform) -> BaseImage:
    """The base image ``ref`` for ``platform`` (picked from an index); one line when absent."""
    found = registry.manifest(ref.repository, ref.reference)
    if found is None:
        raise BackendError(f"base image '{ref.name}:{ref.reference}' is not in {ref.registry}",
                           hint="push it there, or name another with --docker-base-image "
                                "(base_image in the backend config)")
    media, body, digest = found
    data = _decode(body, f"the manifest of {ref.name}")
    if media in INDEXES or "manifests" in data:
        entries = [m for m in data.get("manifests") or [] if isinstance(m, dict)]
        chosen = next((m for m in entries if platform.matches(m.get("platform") or {})), None)
        if chosen is None:
            offered = sorted({str(Platform(p.get("os", "?"), p.get("architecture", "?"),
                                           p.get("variant"))) for m in entries
                              if (p := m.get("platform") or {}) and p.get("os") != "unknown"})
            raise BackendError(
                f"base image '{ref.name}' has no {platform} variant (it has: "
                f"{', '.join(offered) or 'none'})",
                hint="set 'platform' in the backend config to the nodes' platform, or use a "
                     f"base image built for {platform}")
        digest = str(chosen["digest"])
        found = registry.manifest(ref.repository, digest)
        if found is None:
            raise BackendError(f"base image '{ref.name}': {digest} is listed but absent")
        media, body, _ = found
        data = _decode(body, f"the manifest of {ref.name}@{digest}")
    if media not in MANIFESTS:
        raise BackendError(f"base image '{ref.name}' has a manifest of type '{media}', which "
                           "reprun cannot extend", hint="use an image in Docker v2 or OCI format")
    config_digest = str((data.get("config") or {}).get("digest", ""))
    config = _decode(registry.blob(ref.repository, config_digest),
                     f"the config of {ref.name}")
    actual = Platform(str(config.get("os", "")), str(config.get("architecture", "")),
                      config.get("variant"))
    if not platform.matches({"os": actual.os, "architecture": actual.architecture,
                             "variant": actual.variant}):
        raise BackendError(f"base image '{ref.name}' is {actual}, not {platform}",
                           hint="set 'platform' in the backend config to the nodes' platform, "
                                f"or use a base image built for {platform}")
    return BaseImage(ref, digest, media, data, config)


def descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def dumps(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces): the same content gives the same digest."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
