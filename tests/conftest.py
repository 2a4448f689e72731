"""Shared fixtures: every test gets its own REPRUN_HOME and runs the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example-projects"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("reprun: error:")]


class Reprun:
    """Runs ``python -m runner ...`` with a private REPRUN_HOME."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPRUN_")}
        env["REPRUN_HOME"] = str(self.home)
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner", *args]

    def __call__(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> Result:
        proc = subprocess.run(
            self.argv(*args), cwd=cwd or self.cwd, env=self.env(env), capture_output=True,
            text=True, timeout=timeout, check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), cwd=cwd or self.cwd, env=self.env(env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def record(self, run_id: str) -> dict[str, Any]:
        result = self("runs", "show", run_id, "--json")
        assert result.code == 0, result.stderr
        data: dict[str, Any] = result.json()
        return data

    def last_record(self) -> dict[str, Any]:
        listed = self("runs", "list", "--json").json()
        assert listed, "no run was recorded"
        return self.record(listed[0]["run_id"])


@pytest.fixture
def reprun(tmp_path: Path) -> Reprun:
    home = tmp_path / "reprun-home"
    work = tmp_path / "work"
    work.mkdir()
    return Reprun(home, work)


MakeProject = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """``make_project(mlproject_text, files={"a.py": "..."}, name="proj")`` -> project dir."""

    def make(mlproject: str | None = None, files: Mapping[str, str] | None = None,
             name: str = "proj") -> Path:
        directory = tmp_path / name
        directory.mkdir(parents=True, exist_ok=True)
        if mlproject is not None:
            (directory / "MLproject").write_text(textwrap.dedent(mlproject))
        for rel, text in (files or {}).items():
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return directory

    return make


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; returns stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def init_repo(directory: Path) -> str:
    """Make ``directory`` a git repository with everything committed; returns the commit."""
    git(directory, "init", "-q", "-b", "main")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "initial")
    return git(directory, "rev-parse", "HEAD")


# --- Docker -------------------------------------------------------------------------------------

DEFAULT_TEST_BASE_IMAGE = "reprun-test/python:3.11-bookworm"


def assert_only_last_layer_differs(docker_client: Any, before: str, after: str) -> None:
    """The two images share every layer but the last: a rebuild reused the environment layers."""
    old = docker_client.images.get(before).attrs["RootFS"]["Layers"]
    new = docker_client.images.get(after).attrs["RootFS"]["Layers"]
    assert len(old) == len(new)
    assert old[:-1] == new[:-1] and old[-1] != new[-1]


def _no_docker(reason: str) -> NoReturn:
    """Skip, or fail where an engine is required (CI sets REPRUN_REQUIRE_DOCKER=1)."""
    if os.environ.get("REPRUN_REQUIRE_DOCKER") == "1":
        pytest.fail(f"REPRUN_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of a live Docker engine (skips, or fails in CI, when none answers)."""
    try:
        import docker
    except ImportError:
        _no_docker("the docker package is not installed")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure means no usable engine
        _no_docker(f"no Docker engine answers ({str(exc).splitlines()[0][:120]}); "
                   "start one with .ci/docker-setup.sh")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The Python base image the docker tests build on (made by .ci/docker-setup.sh)."""
    import docker

    name = os.environ.get("REPRUN_TEST_BASE_IMAGE") or DEFAULT_TEST_BASE_IMAGE
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        _no_docker(f"the base image {name} is missing; build it with .ci/docker-setup.sh")
    return name


@pytest.fixture
def image_repo(docker_client: Any) -> Any:
    """A unique project name; every image of reprun/<name> is removed after the test."""
    import uuid

    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for image in docker_client.images.list(name=f"reprun/{name}"):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True, noprune=True)
    for image in docker_client.images.list(name=f"reprun/{name}-base"):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True, noprune=True)


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[Any]:
    """A fake Kubernetes API server (tests/fakekube.py) and a kubeconfig that points at it."""
    from fakekube import running

    node = tmp_path / "node"
    node.mkdir()
    with running(node) as fake:
        fake.kubeconfig_path = fake.kubeconfig(tmp_path / "kubeconfig.json")
        yield fake


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (a free port); yields its host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(textwrap.dedent(f"""\
        version: 0.1
        log: {{level: warn}}
        storage:
          filesystem: {{rootdirectory: {tmp_path / 'registry-data'}}}
          delete: {{enabled: true}}
        http:
          addr: 127.0.0.1:{port}
        """))
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v2/", timeout=1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def pid_alive(pid: int) -> bool:
    """The process exists and is no zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
