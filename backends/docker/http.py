"""Just enough HTTP/1.1 to speak to a Docker engine, over a unix socket or TCP (maybe TLS).

`http.client` would do, but it loads the ``email`` package and ``ssl`` (about 40 ms, a tenth of a
cached docker run); here ``ssl`` is imported only for a TLS engine. Bodies come with a
Content-Length, chunked, or until the engine closes the connection (a hijacked attach stream).
Every failure of the transport or of the protocol is an `OSError`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from runner.errors import BackendError
from runner.frozen import frozen

if TYPE_CHECKING:
    import ssl

DEFAULT_HOST = "unix:///var/run/docker.sock"
MAX_HEADER_LINE = 65536


class ProtocolError(ConnectionError):
    """The engine's answer is not HTTP as expected, or the connection ended early."""


@frozen
class Address:
    """Where the engine listens: a unix socket path, or a TCP host and port (maybe TLS)."""

    host_url: str
    socket_path: str | None = None
    host: str = "localhost"
    port: int = 0
    tls: bool = False
    verify: bool = False
    cert_dir: str | None = None


def address(env: Mapping[str, str]) -> Address:
    """The engine DOCKER_HOST names in ``env`` (never os.environ), with its TLS settings.

    As the docker CLI: TLS when DOCKER_TLS_VERIFY or DOCKER_TLS is set (and, as the docker SDK,
    when DOCKER_CERT_PATH is), the engine's certificate verified only with DOCKER_TLS_VERIFY;
    ca.pem, cert.pem and key.pem are read from DOCKER_CERT_PATH, default ~/.docker.
    """
    url = env.get("DOCKER_HOST") or DEFAULT_HOST
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return Address(url, socket_path=parts.path or "/var/run/docker.sock")
    if parts.scheme in ("tcp", "http", "https"):
        verify = bool(env.get("DOCKER_TLS_VERIFY"))
        cert_path = env.get("DOCKER_CERT_PATH")
        tls = parts.scheme == "https" or verify or bool(env.get("DOCKER_TLS")) or bool(cert_path)
        try:
            port = parts.port or (2376 if tls else 2375)
        except ValueError:
            port = -1
        if not parts.hostname or port < 0:
            raise BackendError(f"DOCKER_HOST '{url}' names no host and port",
                               hint="give it as tcp://HOST:PORT or unix:///PATH")
        home = env.get("HOME") or str(Path.home())
        return Address(url, host=parts.hostname, port=port, tls=tls, verify=verify,
                       cert_dir=cert_path or str(Path(home) / ".docker"))
    raise BackendError(
        f"DOCKER_HOST '{url}' uses the scheme '{parts.scheme}', which reprun cannot speak",
        hint="use unix:///PATH or tcp://HOST:PORT (for ssh://, forward the engine's socket "
             "with ssh -L and point DOCKER_HOST at it)",
    )


def _tls_context(where: Address) -> ssl.SSLContext:
    import ssl

    cert_dir = Path(where.cert_dir or ".")
    ca = cert_dir / "ca.pem"
    if where.verify:
        context = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    if cert.is_file() and key.is_file():
        context.load_cert_chain(str(cert), str(key))
    return context


def open_socket(where: Address, timeout: float | None) -> socket.socket:
    """A connected socket to the engine (TLS handshake done when it speaks TLS)."""
    if where.socket_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where.socket_path)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((where.host, where.port), timeout=timeout)
    if where.tls:
        try:
            return _tls_context(where).wrap_socket(sock, server_hostname=where.host)
        except OSError:
            sock.close()
            raise
    return sock


class Response:
    """The status, headers and body of one answer, the body read as it is needed."""

    def __init__(self, reader: BinaryIO, method: str) -> None:
        self._reader = reader
        line = self._line()
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP answer: {line[:80]!r}")
        self.status = int(code)
        self.headers: dict[str, str] = {}
        while header := self._line():
            name, _, value = header.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._left: int | None = int(length) if length and not self.chunked else None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
        self._chunk_left = 0
        self.done = self._left == 0
        self.reusable = (self._left is not None or self.chunked) and \
            self.headers.get("connection", "").lower() != "close"
        self.on_close: Callable[[], None] | None = None  # a stream closes its connection

    def _line(self) -> str:
        raw = self._reader.readline(MAX_HEADER_LINE)
        if not raw.endswith(b"\n"):
            raise ProtocolError("the engine closed the connection mid-answer")
        return raw.decode("latin-1").rstrip("\r\n")

    def read(self, amount: int = -1) -> bytes:
        """Up to ``amount`` bytes of the body (all of it when -1); b"" at its end."""
        if self.done:
            return b""
        if self.chunked:
            return self._read_chunked(amount)
        want = amount if self._left is None else (
            self._left if amount < 0 else min(amount, self._left))
        data = self._reader.read(want) if want >= 0 else self._reader.read()
        if self._left is not None:
            if len(data) < want:
                raise ProtocolError("the engine closed the connection mid-answer")
            self._left -= len(data)
        self.done = self._left == 0 or not data or amount < 0
        return data

    def close(self) -> None:
        self.done = True
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def _read_chunked(self, amount: int) -> bytes:
        parts: list[bytes] = []
        while amount < 0 or sum(map(len, parts)) < amount:
            if self._chunk_left == 0:
                size = int(self._line().split(";", 1)[0].strip() or "0", 16)
                if size == 0:
                    while self._line():
                        pass  # trailers
                    self.done = True
                    break
                self._chunk_left = size
            want = self._chunk_left if amount < 0 else min(
                self._chunk_left, amount - sum(map(len, parts)))
            data = self._reader.read(want)
            if len(data) < want:
                raise ProtocolError("the engine closed the connection mid-answer")
            parts.append(data)
            self._chunk_left -= want
            if self._chunk_left == 0:
                self._line()  # the CRLF after a chunk
            if amount >= 0:
                break  # one chunk at a time when streaming
        return b"".join(parts)


class Connection:
    """One connection to the engine, kept alive across requests while the engine allows."""

    def __init__(self, where: Address, timeout: float | None) -> None:
        self.sock = open_socket(where, timeout)
        self._reader: BinaryIO = self.sock.makefile("rb")
        self.host = where.host

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        lines = [f"{method} {url} HTTP/1.1", f"Host: {self.host}", "User-Agent: reprun"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(self._reader, method)

    def set_timeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self._reader.close()
        self.sock.close()
