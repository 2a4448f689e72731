"""The registry client against the real docker-registry behind a proxy that cuts an upload, and
against small registries that want a login (bearer token from a realm, basic) or refuse."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun
from fakekube import FakeKube

from backends.oci.auth import credentials_for
from backends.oci.client import Blob, Registry, RegistryDenied
from backends.oci.layers import write_layer


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cutting_proxy(upstream: str, cuts: list[str], refuse_uploads: bool = False,
                  ) -> type[BaseHTTPRequestHandler]:
    """Forwards to ``upstream``; the first upload request with a body over 64 KiB is cut after
    half of it (the connection closes, no answer); with ``refuse_uploads`` every upload is
    answered 403 instead."""

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if refuse_uploads and self.command == "POST":
                self.rfile.read(length)
                data = b'{"errors": [{"code": "DENIED", "message": "read-only"}]}'
                self.send_response(403)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.command in ("PATCH", "PUT") and length > 65536 and not cuts:
                self.rfile.read(length // 2)
                cuts.append(self.path)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *_args: Any) -> None:
            return None

    return Proxy


@pytest.mark.parametrize("size", [300_000, 3_000_000])
def test_an_upload_cut_in_half_starts_again_and_the_blob_is_whole(
        registry: str, size: int) -> None:
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    cuts: list[str] = []
    said: list[str] = []
    with serving(cutting_proxy(registry, cuts)) as proxy:
        client = Registry(proxy)
        client.notify = said.append
        client.upload_blob("team/cut", Blob(digest, size, data=data), chunk=1_000_000)
    assert cuts and said == [f"upload of {digest[:19]} was cut; starting it again"]
    direct = Registry(registry)
    assert direct.has_blob("team/cut", digest)
    assert direct.blob("team/cut", digest) == data


def login_registry(token_log: list[str]) -> type[BaseHTTPRequestHandler]:
    """A registry whose manifests need a bearer token; its realm wants user:secret (Basic)."""

    class Login(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            host = self.headers["Host"]
            auth = self.headers.get("Authorization", "")
            if self.path.startswith("/token"):
                token_log.append(self.path)
                good = "Basic " + base64.b64encode(b"user:secret").decode()
                if auth == good:
                    self._send(200, b'{"token": "t0k"}', {"Content-Type": "application/json"})
                else:
                    self._send(401, b"{}", {})
                return
            if auth != "Bearer t0k":
                challenge = (f'Bearer realm="http://{host}/token",service="reg",'
                             'scope="repository:team/app:pull"')
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                               "message": "authentication required"}]})
                self._send(401, body.encode(), {"WWW-Authenticate": challenge})
                return
            self._send(200, b'{"schemaVersion": 2}', {
                "Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        do_HEAD = do_GET

        def log_message(self, *_args: Any) -> None:
            return None

    return Login


def docker_config(tmp_path: Path, host: str, user: str = "user", secret: str = "secret",
                  ) -> dict[str, str]:
    folder = tmp_path / "dockercfg"
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(folder)}


def test_a_bearer_token_is_fetched_with_the_docker_config_login(tmp_path: Path) -> None:
    tokens: list[str] = []
    with serving(login_registry(tokens)) as host:
        env = docker_config(tmp_path, host)
        assert repr(credentials_for(host, env)) == "Credentials('user', ***)"
        digest = Registry(host, env).manifest_digest("team/app", "v1")
        assert digest == "sha256:" + hashlib.sha256(b'{"schemaVersion": 2}').hexdigest()
        assert tokens == ["/token?service=reg&scope=repository%3Ateam%2Fapp%3Apull"]
        with pytest.raises(RegistryDenied, match=r"answered 401 UNAUTHORIZED"):
            Registry(host, docker_config(tmp_path, host, secret="wrong")).manifest_digest(
                "team/app", "v1")
        with pytest.raises(RegistryDenied) as denied:
            Registry(host, {}).manifest_digest("team/app", "v1")
        assert f"log in to {host}" in str(denied.value.hint)


def refusing(code: int) -> type[BaseHTTPRequestHandler]:
    class Refuse(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.dumps({"errors": [{"code": "DENIED" if code == 403 else "UNAUTHORIZED",
                                           "message": "no way"}]}).encode()
            self.send_response(code)
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = _answer

        def log_message(self, *_args: Any) -> None:
            return None

    return Refuse


@pytest.mark.parametrize("code", [401, 403])
def test_a_refusing_registry_is_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, code: int) -> None:
    project = make_project("name: refused\nentry_points:\n  main:\n    command: echo ran\n")
    with serving(refusing(code)) as host:
        config = json.dumps({"repository-uri": f"{host}/team/app", "image_builder": "registry",
                             "base_image": f"{host}/base/python:3.11", "poll_seconds": 0.3})
        result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                        config, env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    word = "DENIED" if code == 403 else "UNAUTHORIZED"
    assert (f"registry {host}: GET /v2/base/python/manifests/3.11 answered {code} {word}: "
            "no way") in line
    assert f"log in to {host}" in line
    assert not fake_kube.created_jobs


def test_layers_are_reproducible(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("print(1)\n")
    (tmp_path / "run.sh").write_text("echo\n")
    (tmp_path / "run.sh").chmod(0o755)
    make: Callable[[], Any] = lambda: write_layer([  # noqa: E731
        ("w/a/x.py", tmp_path / "a" / "x.py"), ("w/run.sh", tmp_path / "run.sh")])
    first = make()
    os.utime(tmp_path / "run.sh", (1, 1))
    second = make()
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    first.close()
    second.close()


def test_plain_http_only_for_loopback_and_named_insecure_registries() -> None:
    assert Registry("registry.example.com").base == "https://registry.example.com"
    assert Registry("10.0.0.5:5000").base == "https://10.0.0.5:5000"
    assert Registry("10.0.0.5:5000", insecure=["10.0.0.5:5000"]).base == "http://10.0.0.5:5000"
    assert Registry("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert Registry("localhost:5000").base == "http://localhost:5000"


def test_a_login_is_found_only_for_its_registry(tmp_path: Path) -> None:
    env = docker_config(tmp_path, "registry.example.com")
    assert credentials_for("registry.example.com", env) is not None
    assert credentials_for("other.example.com", env) is None
    assert credentials_for("registry.example.com", {"HOME": str(tmp_path / "nowhere")}) is None
