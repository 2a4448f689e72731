"""Image references as Docker writes them: ``[registry/]repository[:tag][@sha256:digest]``."""

from __future__ import annotations

import re

from runner.errors import UsageError
from runner.frozen import frozen

DOCKER_HUB = "registry-1.docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9._:/]*[a-z0-9])?$")


@frozen
class ImageRef:
    """``registry/repository[:tag][@digest]``, split; ``name`` is how the user wrote it."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    name: str

    @property
    def pinned(self) -> str:
        """``name@digest`` (needs a digest)."""
        return f"{self.name}@{self.digest}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest, else the tag (default ``latest``)."""
        return self.digest or self.tag or "latest"


def parse_reference(ref: str) -> ImageRef:
    """Split an image reference as Docker does (``python`` is ``docker.io/library/python``)."""
    rest, _, digest = ref.partition("@")
    if digest and not DIGEST.match(digest):
        raise UsageError(f"image '{ref}': '{digest}' is not a sha256 digest",
                         hint="write name@sha256:<64 hex digits>")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = rest[colon + 1:] if colon > slash else None
    name = rest[:colon] if tag is not None else rest
    if not name or not _NAME.match(name):
        raise UsageError(f"'{ref}' is not a valid image reference",
                         hint="use lower case, e.g. registry.example.com/team/image:tag")
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
    return ImageRef(registry, repository, tag, digest or None, name)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) is this machine: plain http is allowed there."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "::1", "[::1]") or name.startswith("127.")
