"""A registry client on the standard library: the OCI distribution API (Docker Registry v2).

Manifests are read and written, blobs asked for (HEAD), read, mounted from another repository of
the same registry, and uploaded monolithically (small blobs) or in chunks (PATCH with
``Content-Range``, then a closing PUT). An upload cut on the way (a dropped connection, a digest
the registry refuses) is started again from its first byte in a new upload session: the registry
keeps a blob only under the digest of the bytes it received, so a cut never leaves a broken image.

Authentication follows the registry's challenge: ``Bearer realm=...,service=...,scope=...`` gets a
token from the realm (with the login of `backends.oci.auth`, if any, else anonymously);
``Basic`` sends the login. Plain http is used only for loopback registries and those the caller
names as insecure; everything else is https with certificate checks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from backends.oci.auth import Challenge, Credentials, credentials_for, parse_challenge
from backends.oci.reference import is_loopback
from runner.errors import BackendError
from runner.frozen import frozen

TIMEOUT_S = 60.0
CHUNK_BYTES = 8 << 20  # blobs larger than this go up in PATCH chunks
UPLOAD_ATTEMPTS = 3
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class RegistryDenied(BackendError):
    """The registry wants credentials this client does not have (401), or refuses them (403)."""


class UploadCut(BackendError):
    """An upload did not arrive whole (connection dropped, digest refused); it is started again."""


@frozen
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


@frozen
class Blob:
    """Content to upload: in memory (``data``) or in a file (``path``), known by its digest."""

    digest: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    def open(self) -> IO[bytes]:
        import io

        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is None:
            raise BackendError(f"blob {self.digest} has neither data nor a file")
        return self.path.open("rb")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # followed by Registry.request, without credentials on another host


_OPENER = urllib.request.build_opener(_NoRedirect())


def _message(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors", [])
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace").strip().replace("\n", " ")


class Registry:
    """One registry host, spoken to over the distribution API."""

    def __init__(self, host: str, env: Mapping[str, str] | None = None,
                 insecure: Iterable[str] = ()) -> None:
        self.host = host
        plain = is_loopback(host) or host in set(insecure)
        self.base = f"{'http' if plain else 'https'}://{host}"
        self._login: Credentials | None = credentials_for(host, env or {})
        self._auth: str | None = None
        self._scopes: list[str] = []
        self.bytes_sent = 0  # blob bytes uploaded (whole uploads, restarts included)
        self.notify: Callable[[str], None] = lambda _line: None

    # --- plumbing --------------------------------------------------------------------------

    def request(self, method: str, path: str, *, data: bytes | IO[bytes] | None = None,
                headers: Mapping[str, str] | None = None,
                ok: tuple[int, ...] = (200,)) -> Response:
        """One request; 401 challenges are answered once; redirects of reads are followed."""
        url = path if "://" in path else self.base + path
        for attempt in range(2):
            sent = dict(headers or {})
            if self._auth and urllib.parse.urlsplit(url).netloc == self.host:
                sent["Authorization"] = self._auth
            try:
                answer = self._send(method, url, data, sent)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                if data is not None and method in ("PUT", "PATCH", "POST"):
                    raise UploadCut(f"registry {self.host}: {method} cut off ({exc})") from None
                reason = getattr(exc, "reason", exc)
                raise BackendError(f"cannot reach registry {self.base} ({reason})",
                                   hint="check the image reference and the network") from None
            if answer.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                url = urllib.parse.urljoin(url, answer.headers.get("Location", ""))
                return self._follow(method, url, ok)
            if answer.status == 401 and attempt == 0 and self._answer(answer.headers):
                if hasattr(data, "seek"):
                    data.seek(0)  # type: ignore[union-attr]
                continue
            if answer.status in ok:
                return answer
            self._fail(method, path, answer)
        raise RegistryDenied(f"registry {self.host}: {method} {_short(path)} needs a login",
                             hint=f"log in to {self.host} (docker login writes the docker "
                                  "config file reprun reads)")

    def _request(self, method: str, path: str, *, data: bytes | None = None,
                 headers: Mapping[str, str] | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[int, Mapping[str, str], bytes]:
        answer = self.request(method, path, data=data, headers=headers, ok=ok)
        return answer.status, answer.headers, answer.body

    def _send(self, method: str, url: str, data: bytes | IO[bytes] | None,
              headers: Mapping[str, str]) -> Response:
        request = urllib.request.Request(url, data=data, headers=dict(headers), method=method)
        try:
            with _OPENER.open(request, timeout=TIMEOUT_S) as response:
                body = b"" if method == "HEAD" else response.read()
                return Response(response.status, dict(response.headers), body)
        except urllib.error.HTTPError as exc:
            body = b"" if method == "HEAD" else exc.read()
            return Response(exc.code, dict(exc.headers), body)

    def _follow(self, method: str, url: str, ok: tuple[int, ...]) -> Response:
        """A redirect (blob storage): sent without the registry's credentials."""
        answer = self._send(method, url, None, {})
        if answer.status not in ok:
            self._fail(method, url.split("?", 1)[0], answer)
        return answer

    def _fail(self, method: str, path: str, answer: Response) -> None:
        text = f"registry {self.host}: {method} {_short(path)} answered {answer.status}"
        detail = _message(answer.body)
        text += f" {detail}" if detail else ""
        if answer.status in (401, 403):
            hint = (f"check that the login for {self.host} in the docker config file may do "
                    "this" if self._login else f"log in to {self.host} (docker login writes the "
                    "docker config file reprun reads)")
            raise RegistryDenied(text, hint=hint)
        if answer.status == 400 and method in ("PUT", "PATCH") and "DIGEST_INVALID" in detail:
            raise UploadCut(text)
        raise BackendError(text)

    def _answer(self, headers: Mapping[str, str]) -> bool:
        """Meet a 401's challenge: fetch a bearer token, or use the login for Basic."""
        found = next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")
        challenge = parse_challenge(found)
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self._login is None or self._auth == self._login.basic():
                return False
            self._auth = self._login.basic()
            return True
        if challenge.scheme == "bearer":
            return self._bearer(challenge)
        return False

    def _bearer(self, challenge: Challenge) -> bool:
        params = dict(challenge.params)
        realm = params.pop("realm", "")
        if not realm:
            return False
        for scope in params.pop("scope", "").split(" "):
            if scope and scope not in self._scopes:
                self._scopes.append(scope)
        query = [(k, v) for k, v in params.items()] + [("scope", s) for s in self._scopes]
        url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"
        split = urllib.parse.urlsplit(url)
        headers = {}
        if self._login is not None and (split.scheme == "https" or is_loopback(split.netloc)):
            headers["Authorization"] = self._login.basic()
        try:
            answer = self._send("GET", url, None, headers)
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return False
        if answer.status != 200:
            return False
        try:
            token = json.loads(answer.body)
            value = token.get("token") or token.get("access_token")
        except (ValueError, AttributeError):
            return False
        if not value:
            return False
        self._auth = f"Bearer {value}"
        return True

    # --- the API -----------------------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes, str] | None:
        """``(media type, body, digest)`` of a manifest or index, or None when it is absent."""
        answer = self.request("GET", f"/v2/{repository}/manifests/{reference}",
                              headers={"Accept": ", ".join(MANIFEST_TYPES)}, ok=(200, 404))
        if answer.status == 404:
            return None
        import hashlib

        digest = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        media = _header(answer.headers, "Content-Type").split(";")[0].strip()
        with contextlib.suppress(ValueError, AttributeError):
            media = json.loads(answer.body).get("mediaType") or media
        return media, answer.body, digest

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of ``repository:reference`` (a tag or a digest), or None if absent."""
        found = self.manifest(repository, reference)
        return None if found is None else found[2]

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        answer = self.request("PUT", f"/v2/{repository}/manifests/{reference}", data=body,
                              headers={"Content-Type": media_type}, ok=(201,))
        import hashlib

        return (_header(answer.headers, "Docker-Content-Digest")
                or "sha256:" + hashlib.sha256(body).hexdigest())

    def has_blob(self, repository: str, digest: str) -> bool:
        answer = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404))
        return answer.status == 200

    def blob(self, repository: str, digest: str) -> bytes:
        """A (small) blob's bytes, checked against its digest."""
        import hashlib

        body = self.request("GET", f"/v2/{repository}/blobs/{digest}").body
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise BackendError(f"registry {self.host}: blob {digest} of {repository} does not "
                               "match its digest")
        return body

    def open_blob(self, repository: str, digest: str) -> IO[bytes]:
        """A blob's bytes as a stream (for copies between registries and large layers)."""
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        for _ in range(4):
            headers = {"Authorization": self._auth} if self._auth else {}
            request = urllib.request.Request(url, headers=headers)
            try:
                stream: IO[bytes] = _OPENER.open(request, timeout=TIMEOUT_S)
                return stream
            except urllib.error.HTTPError as exc:
                location = exc.headers.get("Location")
                if exc.code in (301, 302, 303, 307, 308) and location:
                    redirected = urllib.request.Request(urllib.parse.urljoin(url, location))
                    opened: IO[bytes] = _OPENER.open(redirected, timeout=TIMEOUT_S)
                    return opened
                if exc.code == 401 and self._answer(dict(exc.headers)):
                    continue
                self._fail("GET", f"/v2/{repository}/blobs/{digest}",
                           Response(exc.code, dict(exc.headers), exc.read()))
        raise RegistryDenied(f"registry {self.host}: cannot read blob {digest}")

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link ``digest`` from ``source`` (same registry); True if it did."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        answer = self.request("POST", f"/v2/{repository}/blobs/uploads/?{query}", data=b"",
                              ok=(201, 202))
        if answer.status == 202:  # not mounted: an upload session was opened instead; drop it
            location = _header(answer.headers, "Location")
            if location:
                with contextlib.suppress(BackendError):
                    self.request("DELETE", urllib.parse.urljoin(self.base, location),
                                 ok=(204, 404, 405))
        return answer.status == 201

    def upload_blob(self, repository: str, blob: Blob, chunk: int = CHUNK_BYTES) -> None:
        """Upload ``blob``; a cut upload starts again (at most `UPLOAD_ATTEMPTS` times)."""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                self._upload_once(repository, blob, chunk)
                return
            except UploadCut as exc:
                if attempt == UPLOAD_ATTEMPTS:
                    raise BackendError(f"uploading {blob.digest} to {self.host}/{repository} "
                                       f"failed {attempt} times: {exc.message}",
                                       hint="check the network to the registry") from None
                self.notify(f"upload of {blob.digest[:19]} was cut; starting it again")

    def _upload_once(self, repository: str, blob: Blob, chunk: int) -> None:
        answer = self.request("POST", f"/v2/{repository}/blobs/uploads/", data=b"",
                              ok=(202,))
        location = self._location(answer)
        with blob.open() as source:
            if blob.size <= chunk:
                data = source.read()
                self._put_upload(location, blob.digest, data)
                self.bytes_sent += len(data)
                return
            offset = 0
            while part := source.read(chunk):
                answer = self.request(
                    "PATCH", location, data=part, ok=(202,),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{offset + len(part) - 1}"})
                location = self._location(answer)
                offset += len(part)
                self.bytes_sent += len(part)
        self._put_upload(location, blob.digest, b"")

    def _put_upload(self, location: str, digest: str, data: bytes) -> None:
        joiner = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{joiner}digest={digest}", data=data, ok=(201,),
                     headers={"Content-Type": "application/octet-stream"})

    def _location(self, answer: Response) -> str:
        location = _header(answer.headers, "Location")
        if not location:
            raise BackendError(f"registry {self.host} opened an upload without a Location")
        return urllib.parse.urljoin(self.base + "/", location)


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def _short(path: str) -> str:
    """A request path for a message: no query (upload state), the host dropped."""
    split = urllib.parse.urlsplit(path)
    return split.path or path
