"""A light Docker Engine client: the HTTP API over a unix socket or TCP (TLS), stdlib only.

The cached docker run talks to the engine through this module alone, so that it imports neither
the docker SDK nor requests/urllib3 (nor http.client and ssl: `backends.docker.http` speaks the
little HTTP/1.1 needed). It speaks to the engine DOCKER_HOST names in the run's environment
mapping (default ``unix:///var/run/docker.sock``); ``tcp://`` uses TLS as the docker CLI does
(see `backends.docker.http.address`).

Requests use API version `API_VERSION`, or the engine's own when it is older (learned from
``/version``, the first request, which also proves the engine answers: no separate ping). Short
requests share one kept-alive connection; a container's output (attach) and its wait each get
their own.

`Engine.sdk` gives a docker SDK client for the same engine, made lazily, for what this module does
not do (build, pull, push).
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from backends.docker.http import Address, Connection, Response, address
from runner.errors import BackendError

if TYPE_CHECKING:
    from docker import DockerClient

API_VERSION = "1.41"  # Docker 20.10; older engines are spoken to in their own version
MIN_API_VERSION = (1, 30)  # wait?condition=, AutoRemove and mounts
CONNECT_TIMEOUT_S = 10.0
STDOUT, STDERR = 1, 2

__all__ = ["STDERR", "STDOUT", "Address", "Engine", "EngineError", "Response", "address",
           "connect", "frames", "wait_result"]


class EngineError(BackendError):
    """The engine answered a request with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _message(body: bytes, status: int) -> str:
    """The engine's error message (its JSON ``message``), on one line."""
    text = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("message") or text)
    first = text.splitlines()[0] if text else f"HTTP {status}"
    return first[:300]


class Engine:
    """A Docker Engine reached through the HTTP API."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.where = address(env)
        self.api_version = API_VERSION
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._sdk: DockerClient | None = None

    # --- plumbing ------------------------------------------------------------------------------

    def _path(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        full = f"/v{self.api_version}{path}"
        return f"{full}?{urlencode(query)}" if query else full

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: Any = None, versioned: bool = True) -> tuple[int, bytes]:
        """One short request on the shared connection; the status and the whole body."""
        url = self._path(path, query) if versioned else path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                if self._conn is None:
                    self._conn = Connection(self.where, CONNECT_TIMEOUT_S)
                try:
                    response = self._conn.request(method, url, data, headers)
                    content = response.read()
                except ConnectionError:  # a kept-alive connection the engine has closed
                    self._drop()
                    if fresh or attempt == 2:
                        raise
                    continue
                except BaseException:
                    self._drop()
                    raise
                if not response.reusable:
                    self._drop()
                return response.status, content
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, query: Mapping[str, Any] | None = None,
             body: Any = None) -> Any:
        """A request whose success is a 2xx status; the decoded JSON body (or None)."""
        status, data = self.request(method, path, query, body)
        if status >= 300:
            raise EngineError(status, _message(data, status))
        return json.loads(data) if data.strip() else None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _stream(self, method: str, path: str, query: Mapping[str, Any]) -> Response:
        """A request on a connection of its own, for an answer read as it comes (no timeout)."""
        conn = Connection(self.where, CONNECT_TIMEOUT_S)
        try:
            response = conn.request(method, self._path(path, query))
            if response.status >= 300:
                raise EngineError(response.status, _message(response.read(), response.status))
        except BaseException:
            conn.close()
            raise
        conn.set_timeout(None)
        response.on_close = conn.close
        return response

    # --- the engine ----------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        """``/version``; afterwards requests use the engine's API version if it is older."""
        status, data = self.request("GET", "/version", versioned=False)
        if status >= 300:
            raise EngineError(status, _message(data, status))
        info: dict[str, Any] = json.loads(data)
        theirs = str(info.get("ApiVersion") or API_VERSION)
        mine = tuple(int(p) for p in API_VERSION.split("."))
        engine = tuple(int(p) for p in theirs.split("."))
        if engine < MIN_API_VERSION:
            raise BackendError(
                f"the Docker engine at {self.where.host_url} speaks API {theirs}, older than "
                f"{'.'.join(map(str, MIN_API_VERSION))}",
                hint="upgrade the engine (Docker 17.06 or later)",
            )
        self.api_version = theirs if engine < mine else API_VERSION
        return info

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """The image ``ref`` (a name, tag or id) as the engine describes it, or None."""
        status, data = self.request("GET", f"/images/{quote(ref, safe='/:@')}/json")
        if status == 404:
            return None
        if status >= 300:
            raise EngineError(status, _message(data, status))
        found: dict[str, Any] = json.loads(data)
        return found

    def tag_image(self, image: str, repository: str, tag: str) -> None:
        self.call("POST", f"/images/{quote(image, safe='/:@')}/tag",
                  {"repo": repository, "tag": tag})

    def create_container(self, config: Mapping[str, Any], name: str | None = None) -> str:
        query = {"name": name} if name else None
        created = self.call("POST", "/containers/create", query, dict(config))
        return str(created["Id"])

    def start(self, container: str) -> None:
        self.call("POST", f"/containers/{container}/start")

    def kill(self, container: str, signal: str | int) -> None:
        self.call("POST", f"/containers/{container}/kill", {"signal": str(signal)})

    def remove(self, container: str, force: bool = True) -> bool:
        """Remove the container; False when it was not there (any more)."""
        status, data = self.request("DELETE", f"/containers/{container}",
                                    {"force": "1" if force else "0"})
        if status == 404:
            return False
        if status >= 300 and status != 409:  # 409: removal already in progress
            raise EngineError(status, _message(data, status))
        return True

    def wait(self, container: str, condition: str = "next-exit") -> Response:
        """Start waiting (call before start, as the CLI does); `wait_result` reads the answer."""
        return self._stream("POST", f"/containers/{container}/wait", {"condition": condition})

    def attach(self, container: str) -> Response:
        """The container's stdout and stderr from now on (attach before start to miss none)."""
        query = {"stream": "1", "stdout": "1", "stderr": "1"}
        return self._stream("POST", f"/containers/{container}/attach", query)

    def sdk(self) -> DockerClient:
        """A docker SDK client for the same engine (imports the SDK: build, pull, push only)."""
        if self._sdk is None:
            from runner.extras import needs_extra

            with needs_extra("docker", "Docker image builds, pulls and pushes"):
                import docker

            self._sdk = docker.DockerClient.from_env(environment=self.env,
                                                     version=self.api_version)
        return self._sdk


def wait_result(response: Response) -> dict[str, Any]:
    """The answer of `Engine.wait`: ``{"StatusCode": N, "Error": ...}``."""
    try:
        result: dict[str, Any] = json.loads(response.read() or b"{}")
    finally:
        response.close()
    return result


def frames(response: Response) -> Iterator[tuple[int, bytes]]:
    """(stream, bytes) of a multiplexed stream (tty off): 8-byte headers, stream 1 or 2, size."""
    try:
        while True:
            header = _read_exactly(response, 8)
            if len(header) < 8:
                return
            kind, size = struct.unpack(">BxxxL", header)
            payload = _read_exactly(response, size)
            if payload:
                yield kind, payload
            if len(payload) < size:
                return
    finally:
        response.close()


def _read_exactly(response: Response, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = response.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def unreachable(where: str, exc: BaseException, also: str = "") -> BackendError:
    """The one-line error when no engine answers at ``where``."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        reason = f"{exc.strerror}"
    return BackendError(
        f"no Docker engine answers at {where} ({reason[:200]})",
        hint="start one (dockerd), or point DOCKER_HOST at it, e.g. "
             "DOCKER_HOST=unix:///run/docker.sock or DOCKER_HOST=tcp://127.0.0.1:2375" + also,
    )


def connect(env: Mapping[str, str], also: str = "") -> tuple[Engine, str | None]:
    """The engine DOCKER_HOST names (or the default socket), and its version; one request.

    ``also`` ends the hint of the error when no engine answers (another way out).
    """
    engine = Engine(env)
    try:
        version = engine.version().get("Version")
    except (OSError, ValueError, EngineError) as exc:
        engine.close()
        raise unreachable(engine.where.host_url, exc, also) from None
    return engine, str(version) if version else None


