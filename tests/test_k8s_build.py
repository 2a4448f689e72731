"""Kubernetes runs of projects without an ``image``: the docker backend's image, built on a real
engine, pushed to a real docker-registry only when it lacks the content, run by digest (the fake
API server's kubelet runs commands on the host, so the tests check the Job's image field and the
registry, and run the image themselves where its content matters)."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, Result
from fakekube import FakeKube
from test_docker import python_env_project

from backends.kubernetes.registry import Registry

pytestmark = pytest.mark.docker


@pytest.fixture
def tiny_base(docker_client: Any) -> Iterator[str]:
    """A one-file image with no shell: builds of projects without a lock need nothing more, and
    it pushes in a moment."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"{uuid.uuid4()}\n".encode()
        info = tarfile.TarInfo("etc/base-id")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = f"reprun-test/tiny-{uuid.uuid4().hex[:8]}"
    docker_client.api.import_image_from_data(raw.getvalue(), repository=name, tag="1")
    yield f"{name}:1"
    docker_client.images.remove(f"{name}:1", force=True, noprune=True)


@pytest.fixture
def cleanup(docker_client: Any) -> Iterator[list[str]]:
    """Image ids to remove (with every tag) after the test."""
    ids: list[str] = []
    yield ids
    for image_id in dict.fromkeys(ids):
        with contextlib.suppress(Exception):  # already gone with its last tag
            docker_client.images.remove(image_id, force=True, noprune=True)


def kube_run(reprun: Reprun, fake: FakeKube, project: Path, cfg: dict[str, Any],
             *args: str) -> Result:
    config = json.dumps({"poll_seconds": 0.3, **cfg})
    return reprun("run", str(project), "--backend", "kubernetes", "--backend-config", config,
                  *args, env={"KUBECONFIG": str(fake.kubeconfig_path)})


def job_image(fake: FakeKube, index: int = -1) -> str:
    image: str = fake.created_jobs[index]["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_first_run_builds_and_pushes_then_reuses_and_a_change_pushes_a_new_digest(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        tiny_base: str, image_repo: str, docker_client: Any, cleanup: list[str]) -> None:
    project = make_project(f"""
        name: {image_repo}
        docker_env:
          image: {tiny_base}
        entry_points:
          main:
            command: "echo ran"
    """, {"train.py": "print('v1')\n"}, name=image_repo)
    repo = f"{registry}/team/proj"
    first = kube_run(reprun, fake_kube, project, {"repository-uri": repo})
    assert first.code == 0, first.stderr
    facts = reprun.last_record()["backend"]["facts"]
    cleanup.append(facts["image_id"])
    digest = facts["image_digest"]
    assert job_image(fake_kube) == f"{repo}@{digest}" == facts["image"]
    assert facts["image_built"] is True and facts["image_pushed"] is True
    assert Registry(registry).manifest_digest("team/proj", digest) == digest
    content_tag = facts["image_tag"].rsplit(":", 1)[1]
    assert Registry(registry).manifest_digest("team/proj", content_tag) == digest

    second = kube_run(reprun, fake_kube, project, {"repository-uri": repo})
    assert second.code == 0, second.stderr
    again = reprun.last_record()["backend"]["facts"]
    assert again["image_built"] is False and again["image_pushed"] is False
    assert again["image_id"] == facts["image_id"]
    assert job_image(fake_kube) == f"{repo}@{digest}"
    assert "pushing" not in second.stderr and "building" not in second.stderr

    (project / "train.py").write_text("print('v2')\n")
    third = kube_run(reprun, fake_kube, project, {"repository-uri": repo})
    assert third.code == 0, third.stderr
    changed = reprun.last_record()["backend"]["facts"]
    cleanup.append(changed["image_id"])
    assert changed["image_built"] is True and changed["image_pushed"] is True
    assert changed["image_digest"] != digest and changed["image_id"] != facts["image_id"]
    assert job_image(fake_kube) == f"{repo}@{changed['image_digest']}"
    assert Registry(registry).manifest_digest("team/proj", changed["image_digest"])
    tags = json.loads(Registry(registry)._request("GET", "/v2/team/proj/tags/list")[2])["tags"]
    assert sorted(tags) == sorted({content_tag, changed["image_tag"].rsplit(":", 1)[1]})

    # Another machine (here: the local image removed) finds the content tag in the registry.
    docker_client.images.remove(changed["image_id"], force=True, noprune=True)
    fourth = kube_run(reprun, fake_kube, project, {"repository-uri": repo})
    assert fourth.code == 0, fourth.stderr
    reused = reprun.last_record()["backend"]["facts"]
    assert reused["image_built"] is False and reused["image_pushed"] is False
    assert job_image(fake_kube) == changed["image"]


def test_python_env_image_installs_the_lock_of_a_local_run(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        base_image: str, image_repo: str, docker_client: Any, cleanup: list[str]) -> None:
    project = python_env_project(make_project, image_repo)
    local = reprun("run", str(project), "-q")
    assert local.code == 0, local.stderr
    local_env = reprun.last_record()["environment"]
    text = (project / "MLproject").read_text().replace("python greet.py docker", "echo ran")
    (project / "MLproject").write_text(text)  # the fake kubelet runs it on this host

    result = kube_run(reprun, fake_kube, project, {"repository-uri": f"{registry}/team/py"},
                      "--docker-base-image", base_image)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    facts = record["backend"]["facts"]
    cleanup.append(facts["image_id"])
    environment = record["environment"]
    assert environment["manager"] == local_env["manager"] == "uv"
    assert environment["lock_sha256"] == local_env["lock_sha256"]
    assert environment["python_executable"] is None  # no interpreter of this machine ran it
    installed = {(p["name"], p["version"]) for p in environment["packages"]}
    assert installed <= {(p["name"], p["version"]) for p in local_env["packages"]}
    assert job_image(fake_kube) == facts["image"]
    assert Registry(registry).manifest_digest("team/py", facts["image_digest"])
    lock_file = environment["lock_file"]
    shown = docker_client.containers.run(
        facts["image_id"], ["sh", "-c", f"cat /opt/reprun/{lock_file}; python -c "
                            "'import greeting; print(greeting.__name__, \"imported\")'"],
        network_mode="none", remove=True).decode()
    recorded = (reprun.home / "runs" / record["run_id"] / lock_file).read_text()
    assert shown.startswith(recorded) and shown.endswith("greeting imported\n")


def test_no_docker_engine_is_one_line_naming_the_image_key(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: echo ran\n")
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                    json.dumps({"repository-uri": "127.0.0.1:9/team/proj",
                                "image_builder": "docker"}),
                    "--docker-base-image", "reprun-test/absent:1",
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path),
                         "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.code != 0
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert "no Docker engine answers at unix:///nonexistent/docker.sock" in line
    assert "set 'image' in the backend config" in line
    assert not fake_kube.created_jobs


def test_unreachable_registry_is_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, tiny_base: str,
        image_repo: str) -> None:
    """Also: a project with no environment builds on --docker-base-image, which wins over the
    config's base_image, and its record describes the image, not this machine's Python."""
    project = make_project("entry_points:\n  main:\n    command: echo ran\n", name=image_repo)
    cfg = {"repository-uri": "127.0.0.1:9/team/proj", "base_image": "reprun-test/absent:1"}
    result = kube_run(reprun, fake_kube, project, cfg, "--docker-base-image", tiny_base)
    assert result.code != 0
    assert len(result.error_lines) == 1, result.stderr
    assert "repository-uri '127.0.0.1:9/team/proj': cannot reach registry" in (
        result.error_lines[0])
    assert not fake_kube.created_jobs
    record = reprun.last_record()
    dockerfile = (reprun.home / "runs" / record["run_id"] / "Dockerfile").read_text()
    assert f"FROM {tiny_base}\n" in dockerfile
    environment = record["environment"]
    assert environment["manager"] == "docker" and environment["python_version"] is None
    assert environment["packages"] == []


class _LoginRegistry(BaseHTTPRequestHandler):
    """A registry that wants a login for everything (reprun and the engine have none)."""

    def _answer(self) -> None:
        data = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                       "message": "authentication required"}]}).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="reprun-test"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = _answer

    def log_message(self, *_args: Any) -> None:
        return None


def test_denied_push_is_one_line_naming_the_repository(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, tiny_base: str,
        image_repo: str, docker_client: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoginRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    repo = f"127.0.0.1:{server.server_address[1]}/team/locked"
    project = make_project("entry_points:\n  main:\n    command: echo ran\n", name=image_repo)
    try:
        result = kube_run(reprun, fake_kube, project, {"repository-uri": repo},
                          "--docker-base-image", tiny_base)
    finally:
        server.shutdown()
        for image in docker_client.images.list(name=repo):
            docker_client.images.remove(image.id, force=True, noprune=True)
    assert result.code != 0
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert f"pushing the image to '{repo}' failed: no basic auth credentials" in line
    assert "docker login" in line
    assert not fake_kube.created_jobs
