"""Just enough HTTP/1.1 for the endpoint, on ``socketserver`` (``http.server`` would bring
``http.client`` and ``email`` into every run: about 20 ms of start-up, for one loopback client).

`Handler` reads a request line, headers and leaves the body to its subclass; it offers the
names of ``http.server.BaseHTTPRequestHandler`` the endpoint uses (``path``, ``headers``,
``rfile``, ``wfile``, ``close_connection``, ``send_response``, ``send_header``,
``end_headers``) and keeps the connection for the next request (keep-alive), as the MLflow
client's connection pool expects.
"""

from __future__ import annotations

import socketserver
from typing import Any

MAX_LINE = 64 * 1024
MAX_HEADERS = 100
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           411: "Length Required", 501: "Not Implemented"}


class Headers(dict[str, str]):
    """Header fields by lower-case name."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threading TCP server (one thread a connection)."""

    daemon_threads = True
    allow_reuse_address = False


class Handler(socketserver.StreamRequestHandler):
    """One connection: requests one after the other until it closes."""

    timeout = 60  # an idle keep-alive connection is closed after this
    path = ""
    command = ""
    close_connection = True

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            if not self._read_head():
                return
            dispatch = getattr(self, f"do_{self.command}", None)
            if dispatch is None:
                self.close_connection = True
                self._plain(501, f"method {self.command} not answered")
                return
            dispatch()
            self.wfile.flush()

    def _read_head(self) -> bool:
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        except OSError:
            return False
        if not line:
            return False
        parts = line.decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.close_connection = True
            self._plain(400, "bad request line")
            return False
        self.command, self.path, version = parts
        self.headers = Headers()
        for _ in range(MAX_HEADERS + 1):
            field = self.rfile.readline(MAX_LINE + 1).decode("latin-1")
            if field in ("\r\n", "\n", ""):
                break
            name, _, value = field.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        else:
            self.close_connection = True
            self._plain(400, "too many header fields")
            return False
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive")
        return True

    def send_response(self, status: int) -> None:
        self._head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]

    def send_header(self, name: str, value: str) -> None:
        self._head.append(f"{name}: {value}")

    def end_headers(self) -> None:
        self.wfile.write(("\r\n".join(self._head) + "\r\n\r\n").encode("latin-1"))

    def _plain(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
