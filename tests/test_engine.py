"""The light Docker Engine client (backends/docker/engine.py) against the real engine, and a cached
run
that loads neither the docker SDK nor requests/urllib3."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun

from backends.docker import backend as docker_backend
from backends.docker.engine import STDERR, STDOUT, Engine, address, connect, frames, wait_result
from runner.errors import BackendError

pytestmark = pytest.mark.docker

LINES = 40
TALKER = (
    "import sys\n"
    f"for i in range({LINES}):\n"
    "    print(f'out {i}', flush=True)\n"
    "    print(f'err {i}', file=sys.stderr, flush=True)\n"
    "sys.exit(5)\n"
)


@pytest.fixture
def engine(base_image: str) -> Iterator[Engine]:
    found, _version = connect(os.environ)
    yield found
    found.close()


def run_container(engine: Engine, config: dict[str, Any]) -> tuple[list[tuple[int, bytes]], int]:
    """Create, attach, wait, start (as `docker run --rm` does); the frames and the exit code."""
    container = engine.create_container(config)
    output = engine.attach(container)
    waiting = engine.wait(container, "removed")
    engine.start(container)
    got = list(frames(output))
    return got, int(wait_result(waiting)["StatusCode"])


def test_output_streams_are_kept_apart_and_in_order_and_the_exit_code_comes_back(
    engine: Engine, base_image: str,
) -> None:
    got, code = run_container(engine, {
        "Image": base_image, "Cmd": ["python3", "-c", TALKER],
        "HostConfig": {"AutoRemove": True, "NetworkMode": "none"},
    })
    assert code == 5
    assert {kind for kind, _ in got} == {STDOUT, STDERR}
    out = b"".join(data for kind, data in got if kind == STDOUT).decode()
    err = b"".join(data for kind, data in got if kind == STDERR).decode()
    assert out.splitlines() == [f"out {i}" for i in range(LINES)]
    assert err.splitlines() == [f"err {i}" for i in range(LINES)]


def test_large_output_is_read_whole(engine: Engine, base_image: str) -> None:
    script = "import sys\nsys.stdout.write('x' * 300000)\nsys.stdout.write('end')\n"
    got, code = run_container(engine, {
        "Image": base_image, "Cmd": ["python3", "-c", script],
        "HostConfig": {"AutoRemove": True, "NetworkMode": "none"},
    })
    assert code == 0
    out = b"".join(data for kind, data in got if kind == STDOUT)
    assert out == b"x" * 300000 + b"end"


def test_kill_stops_a_container_and_remove_says_whether_it_was_there(
    engine: Engine, base_image: str,
) -> None:
    container = engine.create_container({
        "Image": base_image, "Cmd": ["python3", "-c", "import time; time.sleep(600)"],
        "HostConfig": {"NetworkMode": "none"},
    })
    try:
        waiting = engine.wait(container, "next-exit")
        engine.start(container)
        engine.kill(container, "SIGKILL")
        assert wait_result(waiting)["StatusCode"] == 137
    finally:
        assert engine.remove(container) is True
    assert engine.remove(container) is False


def test_image_inspect_finds_by_name_and_id_and_none_when_absent(
    engine: Engine, base_image: str, docker_client: Any,
) -> None:
    found = engine.inspect_image(base_image)
    assert found is not None
    assert found["Id"] == docker_client.images.get(base_image).id
    assert engine.inspect_image(found["Id"])["Id"] == found["Id"]  # type: ignore[index]
    assert engine.inspect_image("reprun-test/absent-image:nothing") is None


def test_a_command_that_cannot_start_is_one_line_and_leaves_no_container(
    engine: Engine, base_image: str, docker_client: Any,
) -> None:
    container = engine.create_container({"Image": base_image, "Cmd": ["/no/such/program"],
                                         "HostConfig": {"NetworkMode": "none"}})
    try:
        with pytest.raises(BackendError) as caught:
            docker_backend._start(engine, container, keep=True)
        message = caught.value.message
        assert message.startswith("could not start the container: ")
        assert "/no/such/program" in message and "\n" not in message
    finally:
        engine.remove(container)
    with pytest.raises(BackendError) as missing:
        engine.create_container({"Image": "reprun-test/absent-image:nothing"})
    assert "No such image" in missing.value.message


def test_an_engine_that_is_not_there_is_one_line_with_the_docker_host_hint(
    tmp_path: Path,
) -> None:
    host = f"unix://{tmp_path}/absent/docker.sock"
    with pytest.raises(BackendError) as caught:
        connect({"DOCKER_HOST": host})
    assert caught.value.message == f"no Docker engine answers at {host} (No such file or directory)"
    assert "DOCKER_HOST=" in caught.value.hint
    with pytest.raises(BackendError) as scheme:
        connect({"DOCKER_HOST": "ssh://user@example.invalid"})
    assert "scheme 'ssh'" in scheme.value.message


def test_docker_host_addresses() -> None:
    assert address({}).socket_path == "/var/run/docker.sock"
    plain = address({"DOCKER_HOST": "tcp://127.0.0.1"})
    assert (plain.host, plain.port, plain.tls) == ("127.0.0.1", 2375, False)
    tls = address({"DOCKER_HOST": "tcp://example.invalid", "DOCKER_TLS_VERIFY": "1",
                   "HOME": "/home/u"})
    assert (tls.port, tls.tls, tls.verify, tls.cert_dir) == (2376, True, True, "/home/u/.docker")
    certs = address({"DOCKER_HOST": "tcp://h:1", "DOCKER_CERT_PATH": "/c"})
    assert (certs.tls, certs.verify, certs.cert_dir) == (True, False, "/c")


# --- tcp:// and TLS, through a forwarder to the engine's socket -------------------------------


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def forwarder(wrap: Callable[[socket.socket], socket.socket] | None) -> Iterator[int]:
    """127.0.0.1:PORT (TLS when ``wrap``) forwarded to the engine's unix socket."""
    target = address(os.environ).socket_path
    if target is None:
        pytest.skip("the engine is not on a unix socket here")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                try:
                    client = wrap(client) if wrap else client
                except (OSError, ssl.SSLError):
                    client.close()
                    continue
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (cert.pem, key.pem)."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=reprun test CA", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "client")):
        _openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", "san.cnf", cwd=directory)
    (directory / "cert.pem").write_bytes((directory / "client.pem").read_bytes())
    (directory / "key.pem").write_bytes((directory / "client-key.pem").read_bytes())


def test_tcp_docker_host(base_image: str) -> None:
    with forwarder(None) as port:
        engine, version = connect({"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
        assert version
        assert engine.inspect_image(base_image) is not None
        engine.close()


def test_tls_docker_host_verifies_the_engine_and_shows_the_client_certificate(
    base_image: str, tmp_path: Path,
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    make_certs(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    server.load_verify_locations(tmp_path / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED  # the engine demands the client's certificate

    def wrap(sock: socket.socket) -> socket.socket:
        return server.wrap_socket(sock, server_side=True)

    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    with forwarder(wrap) as port:
        engine, version = connect({**env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
        assert version
        got, code = run_container(engine, {
            "Image": base_image, "Cmd": ["python3", "-c", "print('over tls')"],
            "HostConfig": {"AutoRemove": True, "NetworkMode": "none"},
        })
        engine.close()
        assert (got, code) == ([(STDOUT, b"over tls\n")], 0)
        (tmp_path / "ca.pem").write_bytes((tmp_path / "client.pem").read_bytes())  # wrong CA
        with pytest.raises(BackendError) as caught:
            connect({**env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert caught.value.message.startswith(f"no Docker engine answers at tcp://127.0.0.1:{port}")
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


# --- a cached run loads no heavy client -------------------------------------------------------


def test_a_cached_docker_run_imports_neither_the_sdk_nor_requests(
    reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str,
) -> None:
    project = make_project(None, {"main.py": "print('cached run')\n"}, name=image_repo)
    args = ["run", str(project), "-e", "main.py", "--backend", "docker",
            "--docker-base-image", base_image]
    first = reprun(*args)
    assert first.code == 0, first.stderr
    assert reprun.last_record()["backend"]["docker"]["built"] is True
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args],
                          cwd=reprun.cwd, env=reprun.env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "cached run\n"
    assert reprun.last_record()["backend"]["docker"]["built"] is False
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "backends.docker.engine" in imported
    assert not imported & {"docker", "requests", "urllib3", "http.client", "ssl"}, (
        imported & {"docker", "requests", "urllib3", "http.client", "ssl"})
