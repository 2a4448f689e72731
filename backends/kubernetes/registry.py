"""Image references for the Kubernetes backend: resolve tags to digests, push if missing.

The registry client itself is `backends.oci` (standard library only; loopback registries over
plain http, every other over https; bearer tokens and logins as the registry asks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import field

from backends.oci.client import MANIFEST_TYPES, Blob, Registry, RegistryDenied
from backends.oci.reference import DIGEST, DOCKER_HUB, ImageRef, parse_reference
from runner.errors import BackendError
from runner.frozen import frozen

__all__ = ["DIGEST", "DOCKER_HUB", "MANIFEST_TYPES", "ImageContent", "ImageRef", "PushResult",
           "Registry", "RegistryDenied", "parse_reference", "push_if_missing", "resolve_digest"]

@frozen
class ImageContent:
    """An image as the registry stores it: a manifest and the blobs it names (config, layers)."""

    manifest: bytes
    media_type: str
    blobs: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


@frozen
class PushResult:
    reference: str
    digest: str
    pushed: bool
    blobs_uploaded: int = 0


def resolve_digest(ref: str) -> ImageRef:
    """``ref`` with its digest: as given (no network), else asked of its registry."""
    parsed = parse_reference(ref)
    if parsed.digest:
        return parsed
    tag = parsed.tag or "latest"
    digest = Registry(parsed.registry).manifest_digest(parsed.repository, tag)
    if digest is None:
        raise BackendError(f"image '{ref}' not found: {parsed.registry} has no tag '{tag}' in "
                           f"{parsed.repository}", hint="check the image name and tag")
    return ImageRef(parsed.registry, parsed.repository, tag, digest, parsed.name)


def push_if_missing(content: ImageContent, repository_uri: str, tag: str) -> PushResult:
    """Make ``repository_uri`` hold ``content``; nothing is sent when it already has that digest.

    Blobs the registry already has are not sent either. The result names the image by digest.
    """
    target = parse_reference(repository_uri)
    registry = Registry(target.registry)
    digest = content.digest
    pinned = f"{target.name}@{digest}"
    if registry.manifest_digest(target.repository, digest) == digest:
        return PushResult(pinned, digest, pushed=False)
    uploaded = 0
    for blob_digest, data in content.blobs.items():
        if not registry.has_blob(target.repository, blob_digest):
            registry.upload_blob(target.repository, Blob(blob_digest, len(data), data=data))
            uploaded += 1
    stored = registry.put_manifest(target.repository, tag, content.manifest, content.media_type)
    if stored != digest:
        raise BackendError(f"registry {target.registry} stored the manifest as {stored}, "
                           f"not {digest}")
    return PushResult(pinned, digest, pushed=True, blobs_uploaded=uploaded)
