"""Image references and the Docker Registry HTTP API v2: resolve tags to digests, push if missing.

Only the standard library is used. Registries on loopback (127.0.0.0/8, localhost) are spoken to
over plain http, as Docker does; every other registry over https. Anonymous bearer tokens are
fetched when a registry asks for them (``WWW-Authenticate: Bearer ...``).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from runner.errors import BackendError, UsageError
from runner.frozen import frozen

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TIMEOUT_S = 30.0


class RegistryDenied(BackendError):
    """The registry wants credentials this client does not have (401), or refuses them (403)."""


@frozen
class ImageRef:
    """``registry/repository[:tag][@digest]``, split; ``name`` is how the user wrote the base."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    name: str

    @property
    def pinned(self) -> str:
        """``name@digest`` (needs a digest)."""
        return f"{self.name}@{self.digest}"


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
    if not name or not re.match(r"^[a-z0-9]([-a-z0-9._:/]*[a-z0-9])?$", name):
        raise UsageError(f"'{ref}' is not a valid image reference",
                         hint="use lower case, e.g. registry.example.com/team/image:tag")
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
    return ImageRef(registry, repository, tag, digest or None, name)


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


class Registry:
    """One registry host, spoken to over its HTTP API v2."""

    def __init__(self, host: str) -> None:
        self.host = host
        loopback = host.split(":", maxsplit=1)[0] in ("localhost", "::1") or host.startswith("127.")
        self.base = f"{'http' if loopback else 'https'}://{host}"
        self._token: str | None = None

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of ``repository:reference`` (a tag or a digest), or None if it is absent."""
        status, headers, body = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)}, ok=(200, 404),
        )
        if status == 404:
            return None
        return headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404))
        return status == 200

    def upload_blob(self, repository: str, digest: str, data: bytes) -> None:
        _, headers, _ = self._request("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,))
        location = urllib.parse.urljoin(self.base, headers.get("Location", ""))
        joiner = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{joiner}digest={digest}", data=data,
                      headers={"Content-Type": "application/octet-stream"}, ok=(201,))

    def put_manifest(self, repository: str, tag: str, content: ImageContent) -> str:
        _, headers, _ = self._request(
            "PUT", f"/v2/{repository}/manifests/{tag}", data=content.manifest,
            headers={"Content-Type": content.media_type}, ok=(201,),
        )
        return headers.get("Docker-Content-Digest") or content.digest

    def _request(self, method: str, path: str, *, data: bytes | None = None,
                 headers: Mapping[str, str] | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[int, Mapping[str, str], bytes]:
        url = path if "://" in path else self.base + path
        for attempt in range(2):
            sent = dict(headers or {})
            if self._token:
                sent["Authorization"] = f"Bearer {self._token}"
            request = urllib.request.Request(url, data=data, headers=sent, method=method)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and self._authenticate(exc.headers):
                    continue
                if exc.code in ok:
                    return exc.code, dict(exc.headers), exc.read()
                if exc.code in (401, 403):
                    raise RegistryDenied(f"registry {self.host}: {method} {path} answered "
                                         f"{exc.code} {_registry_message(exc.read())}") from None
                raise BackendError(f"registry {self.host}: {method} {path} answered {exc.code} "
                                   f"{_registry_message(exc.read())}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise BackendError(f"cannot reach registry {self.base} ({reason})",
                                   hint="check the image reference and the network") from None
        raise RegistryDenied(f"registry {self.host}: {method} {path} needs credentials",
                             hint="give the image by digest (name@sha256:...) to skip the lookup")

    def _authenticate(self, headers: Any) -> bool:
        challenge = str(headers.get("WWW-Authenticate", ""))
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        url = f"{realm}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        self._token = answer.get("token") or answer.get("access_token")
        return bool(self._token)


def _registry_message(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors", [])
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace").strip()


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
            registry.upload_blob(target.repository, blob_digest, data)
            uploaded += 1
    stored = registry.put_manifest(target.repository, tag, content)
    if stored != digest:
        raise BackendError(f"registry {target.registry} stored the manifest as {stored}, "
                           f"not {digest}")
    return PushResult(pinned, digest, pushed=True, blobs_uploaded=uploaded)
