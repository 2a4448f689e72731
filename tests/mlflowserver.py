"""A real MLflow tracking server for the tests, and a gateway in front of it for faults.

The server runs from MLflow's own virtualenv (``REPRUN_TEST_MLFLOW`` names its ``mlflow``
executable; .ci/run makes it), never from reprun's: ``mlflow server`` on 127.0.0.1 with a SQLite
backend and proxied artifacts, one worker, in a session of its own (setsid) so that stopping
its process group stops every worker it started. Without ``REPRUN_TEST_MLFLOW`` the tests that
need it skip; with ``CI=true`` they fail instead.

`Gateway` is an authenticating reverse proxy such as teams put in front of MLflow (nginx,
oauth2-proxy): it forwards to the real server, answers 401 without the right Bearer token, can
be slowed down, and can be stopped and started again on the same port (a server killed mid-run).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A running ``mlflow server``; ``api`` calls its REST API."""

    def __init__(self, url: str, mlflow: Path, log: Path) -> None:
        self.url = url
        self.mlflow = mlflow
        self.log = log

    def api(self, method: str, endpoint: str, body: dict[str, Any] | None = None, /,
            **query: str) -> dict[str, Any]:
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", "runs/get", run_id=run_id)["run"]
        return run

    def tags(self, run_id: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.run(run_id)["data"].get("tags", [])}

    def params(self, run_id: str) -> dict[str, str]:
        return {p["key"]: p["value"] for p in self.run(run_id)["data"].get("params", [])}

    def metrics(self, run_id: str) -> dict[str, float]:
        return {m["key"]: m["value"] for m in self.run(run_id)["data"].get("metrics", [])}

    def artifacts(self, run_id: str, path: str = "") -> list[str]:
        """Every file under the run's artifacts (recursively), as relative paths."""
        query = {"run_id": run_id, **({"path": path} if path else {})}
        files = self.api("GET", "artifacts/list", **query).get("files", [])
        found: list[str] = []
        for item in files:
            if item.get("is_dir"):
                found += self.artifacts(run_id, item["path"])
            else:
                found.append(item["path"])
        return sorted(found)

    def artifact(self, run_id: str, path: str) -> bytes:
        info = self.run(run_id)["info"]
        base = info["artifact_uri"].split(":", 1)[1].strip("/")
        url = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{base}/{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            data: bytes = response.read()
            return data

    def experiment_runs(self, experiment_id: str) -> list[dict[str, Any]]:
        found = self.api("POST", "runs/search", {"experiment_ids": [experiment_id],
                                                 "max_results": 1000})
        runs: list[dict[str, Any]] = found.get("runs", [])
        return runs


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _unavailable(reason: str) -> Any:
    if os.environ.get("CI") == "true":
        pytest.fail(f"MLflow tracking server tests cannot run in CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def running_server(directory: Path) -> Iterator[Server]:
    mlflow = os.environ.get("REPRUN_TEST_MLFLOW")
    if not mlflow:
        _unavailable("REPRUN_TEST_MLFLOW does not name an mlflow executable (.ci/run makes one)")
    executable = Path(str(mlflow))
    if not os.access(executable, os.X_OK):
        _unavailable(f"REPRUN_TEST_MLFLOW={executable} is not an executable")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / "mlflow-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(executable), "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
             "--artifacts-destination", str(directory / "artifacts")],
            cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                _unavailable(f"mlflow server did not start (exit {proc.poll()}): {tail}")
            time.sleep(0.5)
        yield Server(url, executable, log)
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole process group, SIGKILL to what is left after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class Gateway:
    """An authenticating reverse proxy in front of ``target`` on a port of its own."""

    def __init__(self, target: str, token: str | None = None) -> None:
        self.target = urllib.parse.urlsplit(target)
        self.token = token
        self.delay = 0.0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Gateway:
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return None

            def _forward(self) -> None:
                gateway.requests.append(f"{self.command} {self.path}")
                time.sleep(gateway.delay)
                if gateway.token and self.headers.get("Authorization") != \
                        f"Bearer {gateway.token}":
                    self._answer(401, b'{"error_code": "UNAUTHENTICATED", '
                                      b'"message": "bad credentials"}', {})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(gateway.target.hostname,
                                                      gateway.target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "authorization")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                kept = {k: v for k, v in response.getheaders()
                        if k.lower() in ("content-type",)}
                self._answer(response.status, response.read(), kept)
                upstream.close()

            def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
