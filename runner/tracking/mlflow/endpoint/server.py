"""The HTTP side of the endpoint: a standard-library server on the loopback, one per run.

Every request must carry the run's token (``Authorization: Bearer <token>``, what the MLflow
client sends for ``MLFLOW_TRACKING_TOKEN``); without it the answer is 401. JSON calls go to
`runner.tracking.mlflow.endpoint.api`, artifact calls to `...endpoint.artifacts`; anything else
is answered 404 with its method and path in MLflow's error shape, and listed in the record.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from runner.tracking.mlflow.endpoint import api, artifacts, checks
from runner.tracking.mlflow.endpoint.checks import ApiError
from runner.tracking.mlflow.endpoint.http import Handler, Server
from runner.tracking.mlflow.endpoint.state import State

REST = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
SERVER_INFO = ("/api/3.0/mlflow/server-info", "/api/2.0/mlflow/server-info")
Notify = Callable[[str], None]
POLL_S = 0.02  # how soon a stop is noticed (it ends every run: kept short)


class Endpoint(Server):
    """The server of one run; `state` holds what it was sent."""

    def __init__(self, state: State, token: str, notify: Notify) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state, self.token, self.notify = state, token, notify
        self.thread = threading.Thread(target=self.serve_forever, name="reprun-mlflow",
                                       kwargs={"poll_interval": POLL_S}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """No more requests: what comes later finds nothing listening."""
        with self.state.lock:
            self.state.closed = True
        stopper = threading.Thread(target=self.shutdown, name="reprun-mlflow-stop", daemon=True)
        stopper.start()
        while stopper.is_alive():  # a connection wakes the loop: it need not wait for its poll
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                pass
            stopper.join(POLL_S / 4)
        self.server_close()
        self.thread.join(timeout=5)
        with self.state.lock:
            self.state.close()


class _Handler(Handler):
    server: Endpoint
    body_read = False

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        state = self.server.state
        self.body_read = False
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query))
        try:
            if not self._authorized():
                self._drain()
                self._json(401, {"error_code": "UNAUTHENTICATED", "message": "reprun's MLflow "
                                 "endpoint needs the run's token (MLFLOW_TRACKING_TOKEN)"})
                return
            self._route(method, path, query)
        except ApiError as error:
            self.close_connection = True  # a body may be left unread
            with state.lock:
                state.refuse(f"{method} {path}", error)
            self._json(error.status, error.body())
        except api.Unanswered:
            self._unanswered(method, path)
        except OSError as exc:
            failed = ApiError(400, "INTERNAL_ERROR", f"reprun could not store it: {exc}")
            self.close_connection = True
            with state.lock:
                state.refuse(f"{method} {path}", failed)
            self._json(400, failed.body())

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        state = self.server.state
        if path.startswith(REST):
            body = self._body() if method in ("POST", "PATCH", "DELETE") else {}
            self._json(200, api.answer(state, method, path[len(REST):], body, query))
        elif path == ARTIFACTS and method == "GET":
            self._json(200, artifacts.listing(state, query.get("path", "")))
        elif path.startswith(ARTIFACTS + "/"):
            self._artifact(method, path[len(ARTIFACTS) + 1:])
        elif path in SERVER_INFO and method == "GET":
            self._json(200, {"store_type": None, "workspaces_enabled": False,
                             "multipart_uploads_enabled": False,
                             "multipart_downloads_enabled": False})
        else:
            raise api.Unanswered(f"{method} {path}")

    def _artifact(self, method: str, path: str) -> None:
        state = self.server.state
        if method == "PUT":
            length = self._length()
            self.body_read = True  # read by the upload, or the connection is closed
            artifacts.upload(state, path, self.rfile, length)
            self._json(200, {})
        elif method == "GET":
            file = artifacts.download(state, path)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(file.stat().st_size))
            self.end_headers()
            artifacts.send(file, self.wfile)
        else:
            raise api.Unanswered(f"{method} {ARTIFACTS}/{path}")

    def _unanswered(self, method: str, path: str) -> None:
        state = self.server.state
        shown = f"{method} {path}"
        with state.lock:
            first = shown not in state.unanswered
            if first and len(state.unanswered) < 50:
                state.unanswered.append(shown)
        if first:
            self.server.notify(f"warning: mlflow: the project called {shown}, which reprun's "
                               "MLflow endpoint does not answer; what it sent is not recorded")
        self._drain()
        self._json(404, {"error_code": "ENDPOINT_NOT_FOUND",
                         "message": f"reprun's MLflow endpoint does not answer {shown}"})

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode())

    def _length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "INVALID_PARAMETER_VALUE", "chunked uploads are not accepted; "
                           "send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise checks.invalid("Invalid Content-Length")
        return length

    def _drain(self) -> None:
        """Read a body left unread, so that the connection can carry the next request."""
        if self.body_read:
            return
        self.body_read = True
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if length > checks.MAX_JSON_BODY:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, artifacts.CHUNK))
            if not chunk:
                break
            length -= len(chunk)

    def _body(self) -> dict[str, Any]:
        length = self._length()
        if length > checks.MAX_JSON_BODY:
            self.close_connection = True
            raise checks.invalid(f"Request body of {length} bytes: more than the "
                                 f"{checks.MAX_JSON_BODY} reprun accepts")
        self.body_read = True
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise checks.invalid("The request body is not JSON") from None
        if not isinstance(body, dict):
            raise checks.invalid("The request body is not a JSON object")
        return body

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
