"""Kubernetes images assembled through the registry's HTTP API, with no Docker engine: the real
docker-registry holds the base (pushed here from the test base image, uncompressed), reprun runs
with DOCKER_HOST pointing nowhere and the docker package made unimportable, and the real Docker
engine then pulls the assembled image by digest and runs the project in it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, Result
from fakekube import FakeKube, PodScript
from test_docker import python_env_project
from test_k8s_registry import sha, tiny_image
from test_oci_client import cutting_proxy, serving

from backends.kubernetes.envlayer import host_platform_of
from backends.oci.client import Blob, Registry
from backends.oci.manifest import OCI_INDEX
from backends.oci.reference import parse_reference

pytestmark = pytest.mark.docker

NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture(scope="session")
def saved_base(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test base image as `docker save` writes it (once per session)."""
    folder = tmp_path_factory.mktemp("saved-base")
    tar_path = folder / "base.tar"
    subprocess.run(["docker", "save", "-o", str(tar_path), base_image], check=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder / "x", filter="data")
    return folder / "x"


def push_saved(saved: Path, registry: str, repository: str, tag: str) -> str:
    """Push a saved image as an OCI image with uncompressed layers; its manifest digest."""
    entry = json.loads((saved / "manifest.json").read_text())[0]
    client = Registry(registry)
    config = (saved / entry["Config"]).read_bytes()
    layers = []
    for rel in entry["Layers"]:
        path = saved / rel
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        size = path.stat().st_size
        client.upload_blob(repository, Blob(digest, size, path=path))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": digest, "size": size})
    client.upload_blob(repository, Blob(sha(config), len(config), data=config))
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha(config), "size": len(config)},
                       "layers": layers}).encode()
    return client.put_manifest(repository, tag, body, "application/vnd.oci.image.manifest.v1+json")


@pytest.fixture
def no_docker_package(tmp_path: Path) -> dict[str, str]:
    """An environment in which no Docker engine answers and `import docker` fails."""
    shadow = tmp_path / "shadow" / "docker"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('docker is not installed here')\n")
    return {"DOCKER_HOST": NO_ENGINE, "PYTHONPATH": str(shadow.parent)}


@pytest.fixture
def pulled(docker_client: Any) -> Iterator[list[str]]:
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(Exception):  # already gone
            docker_client.images.remove(ref, force=True, noprune=True)


def kube_run(reprun: Reprun, fake: FakeKube, project: Path, cfg: dict[str, Any],
             env: dict[str, str], *args: str) -> Result:
    config = json.dumps({"poll_seconds": 0.3, **cfg})
    return reprun("run", str(project), "--backend", "kubernetes", "--backend-config", config,
                  *args, env={"KUBECONFIG": str(fake.kubeconfig_path), **env})


def test_assembled_image_runs_in_docker_and_a_code_change_pushes_one_small_layer(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        saved_base: Path, docker_client: Any, no_docker_package: dict[str, str],
        image_repo: str, pulled: list[str]) -> None:
    push_saved(saved_base, registry, "base/python", "3.11")
    project = python_env_project(make_project, image_repo)
    text = (project / "MLproject").read_text().replace("python greet.py docker", "echo ran")
    (project / "MLproject").write_text(text)  # the fake kubelet runs it on this host
    cfg = {"repository-uri": f"{registry}/team/proj", "base_image": f"{registry}/base/python:3.11"}
    first = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert first.code == 0, first.stderr
    assert f"image builder: registry (no Docker engine answers at {NO_ENGINE})" in first.stderr
    assert first.stderr.count("image builder:") == 1
    facts = reprun.last_record()["backend"]["facts"]
    assert facts["image_builder"] == "registry" and facts["env_layer_built"] is True
    assert facts["image_pushed"] is True and facts["image_source"] == "built"
    assert facts["image_bytes_pushed"] < 20_000_000  # the base's layer was mounted, not sent
    job = fake_kube.created_jobs[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert job == facts["image"] == f"{registry}/team/proj@{facts['image_digest']}"

    pulled.append(facts["image"])
    image = docker_client.images.pull(facts["image"])
    assert image.id == facts["image_id"]  # the config digest is the engine's image id
    shown = docker_client.containers.run(facts["image"], ["python", "greet.py", "docker"],
                                         network_mode="none", remove=True).decode()
    assert shown.startswith("Hello, docker! (greeting 1.0, python 3.11")
    assert docker_client.containers.run(facts["image"], network_mode="none",
                                        remove=True).decode() == "ran\n"

    (project / "greet.py").write_text((project / "greet.py").read_text() + "# changed\n")
    second = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert second.code == 0, second.stderr
    again = reprun.last_record()["backend"]["facts"]
    assert again["env_layer_built"] is False and again["image_pushed"] is True
    assert again["image_digest"] != facts["image_digest"]
    assert 0 < again["image_bytes_pushed"] < 20_000  # the code layer and the config only
    assert "building the environment layer" not in second.stderr

    third = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert third.code == 0, third.stderr
    same = reprun.last_record()["backend"]["facts"]
    assert same["image_digest"] == again["image_digest"] and same["image_pushed"] is False
    assert same["image_bytes_pushed"] == 0

    run_id = reprun.last_record()["run_id"]
    replayed = reprun("reproduce", run_id, env={"KUBECONFIG": str(fake_kube.kubeconfig_path),
                                                **no_docker_package})
    assert replayed.code == 0, replayed.stderr
    container = fake_kube.created_jobs[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == same["image"]  # the recorded image, by digest


def _index(registry: str, repository: str, platform: dict[str, str],
           config: dict[str, Any] | None = None) -> str:
    """A one-platform index over a one-file image whose config says ``config``."""
    image = tiny_image("base")
    client = Registry(registry)
    manifest = json.loads(image.manifest)
    blobs = dict(image.blobs)
    if config is not None:
        old = blobs.pop(manifest["config"]["digest"])
        data = json.dumps({**json.loads(old), **config}).encode()
        blobs[sha(data)] = data
        manifest["config"].update(digest=sha(data), size=len(data))
    body = json.dumps(manifest).encode()
    for digest, data in blobs.items():
        client.upload_blob(repository, Blob(digest, len(data), data=data))
    client.put_manifest(repository, sha(body), body, image.media_type)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": image.media_type, "digest": sha(body), "size": len(body),
        "platform": platform}]}).encode()
    return client.put_manifest(repository, "multi", index, OCI_INDEX)


def test_a_base_without_the_nodes_platform_is_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    _index(registry, "base/tiny", {"os": "linux", "architecture": "amd64"})
    project = make_project("name: tiny\nentry_points:\n  main:\n    command: echo ran\n")
    cfg = {"repository-uri": f"{registry}/team/tiny", "base_image": f"{registry}/base/tiny:multi",
           "platform": "linux/arm64"}
    result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    assert (f"base image '{registry}/base/tiny' has no linux/arm64 variant (it has: "
            "linux/amd64)") in result.error_lines[0]
    assert not fake_kube.created_jobs


def test_an_environment_for_another_platform_and_python_is_refused_in_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    other = {"os": "linux", "architecture": "s390x"}
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    there = "3.10" if here != "3.10" else "3.12"
    _index(registry, "base/s390x", other, {**other, "config": {
        "Env": [f"PYTHON_VERSION={there}.1"]}})
    project = python_env_project(make_project, "s390xproj")
    cfg = {"repository-uri": f"{registry}/team/s390x",
           "base_image": f"{registry}/base/s390x:multi", "platform": "linux/s390x",
           "env_build": "local"}
    result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert (f"the environment layer must be built for linux/s390x with Python {there}, but "
            f"this machine is {host_platform_of()} with Python {here}; reprun builds it here "
            "only when they match") in line
    assert not fake_kube.created_jobs


def test_a_base_whose_config_is_another_platform_is_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    _index(registry, "base/liar", {"os": "linux", "architecture": "arm64"})
    project = make_project("name: liar\nentry_points:\n  main:\n    command: echo ran\n")
    cfg = {"repository-uri": f"{registry}/team/liar",
           "base_image": f"{registry}/base/liar:multi", "platform": "linux/arm64"}
    result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    assert f"base image '{registry}/base/liar' is linux/amd64, not linux/arm64" in (
        result.error_lines[0])


def test_dry_run_says_which_builder(reprun: Reprun, make_project: MakeProject,
                                    fake_kube: FakeKube, no_docker_package: dict[str, str]
                                    ) -> None:
    project = make_project("name: dry\nentry_points:\n  main:\n    command: echo ran\n")
    result = kube_run(reprun, fake_kube, project, {"repository-uri": "127.0.0.1:9/team/dry"},
                      no_docker_package, "--dry-run")
    assert result.code == 0, result.stderr
    assert f"image builder: registry (no Docker engine answers at {NO_ENGINE})" in (
        result.stdout + result.stderr)
    chosen = kube_run(reprun, fake_kube, project, {"repository-uri": "127.0.0.1:9/team/dry",
                                                   "image_builder": "docker"},
                      no_docker_package, "--dry-run")
    assert "image builder: docker (image_builder in the backend config)" in (
        chosen.stdout + chosen.stderr)
    assert not fake_kube.created_jobs


def test_parse_reference_of_a_base_by_digest() -> None:
    ref = parse_reference("127.0.0.1:5000/a/b@sha256:" + "2" * 64)
    assert ref.reference == "sha256:" + "2" * 64


def test_the_environment_layer_built_by_a_cluster_job_is_the_local_layer(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str], image_repo: str) -> None:
    """The fake kubelet runs the build Job's program with this machine's python3, which stands
    for the base image's (a one-file base that says it has this machine's platform and Python);
    the layer it pushes is the one a local build makes, so the two images are the same image."""
    here = host_platform_of()
    platform = {"os": here.os, "architecture": here.architecture}
    version = f"{sys.version_info.major}.{sys.version_info.minor}.0"
    _index(registry, "base/py", platform,
           {**platform, "config": {"Env": [f"PYTHON_VERSION={version}"]}})
    project = python_env_project(make_project, image_repo)
    text = (project / "MLproject").read_text().replace("python greet.py docker", "echo ran")
    (project / "MLproject").write_text(text)
    base = {"base_image": f"{registry}/base/py:multi", "platform": str(here)}
    local_cfg = {**base, "repository-uri": f"{registry}/a/proj", "env_build": "local"}
    local_run = kube_run(reprun, fake_kube, project, local_cfg, no_docker_package)
    assert local_run.code == 0, local_run.stderr
    local = reprun.last_record()["backend"]["facts"]
    assert local["env_layer_built_where"] == "local"
    cluster_cfg = {**base, "repository-uri": f"{registry}/b/proj", "env_build": "cluster"}
    there = kube_run(reprun, fake_kube, project, cluster_cfg, no_docker_package)
    assert there.code == 0, there.stderr
    assert "building the environment layer in the cluster (Job default/reprun-env-" in (
        there.stderr)
    facts = reprun.last_record()["backend"]["facts"]
    assert facts["env_layer_built_where"] == "cluster"
    build_job = fake_kube.created_jobs[-2]
    assert build_job["metadata"]["name"].startswith("reprun-env-")
    assert build_job["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        f"{registry}/base/py@sha256:")
    assert not fake_kube.jobs or all(not n.startswith("reprun-env-") for _, n in fake_kube.jobs)

    client = Registry(registry)

    def env_layer_of(repository: str) -> str:
        tags = json.loads(client.request("GET", f"/v2/{repository}/tags/list").body)["tags"]
        tag = next(t for t in tags if t.startswith("reprun-env-"))
        found = client.manifest(repository, tag)
        assert found is not None
        return str(json.loads(found[1])["layers"][0]["digest"])

    assert env_layer_of("a/proj") == env_layer_of("b/proj")  # the same bytes
    assert facts["image_digest"] == local["image_digest"]


@pytest.mark.parametrize(("script", "expected"), [
    (PodScript(image_pull_backoff=True), "could not start: ImagePullBackOff (Back-off pulling "
                                         "image"),
    (PodScript(oom=True), "ran out of memory (OOMKilled); raise resources.memory"),
])
def test_a_build_job_that_cannot_pull_or_runs_out_of_memory_is_one_line(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str], script: PodScript, expected: str) -> None:
    _index(registry, "base/tiny", {"os": "linux", "architecture": "amd64"})
    project = python_env_project(make_project, "jobfail")
    fake_kube.script = script
    cfg = {"repository-uri": f"{registry}/team/jf", "base_image": f"{registry}/base/tiny:multi",
           "env_build": "cluster"}
    result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    assert "the environment build Job reprun-env-" in result.error_lines[0]
    assert expected in result.error_lines[0]
    assert len(fake_kube.created_jobs) == 1  # the build Job only; the run's was never made
    assert not fake_kube.jobs  # deleted


def test_a_build_job_that_fails_shows_its_log(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    """The registry lets reprun read but refuses the Job's upload: the Job exits non-zero."""
    with serving(cutting_proxy(registry, [], refuse_uploads=True)) as proxy:
        _index(registry, "base/tiny", {"os": "linux", "architecture": "amd64"})
        project = python_env_project(make_project, "jobexit")
        cfg = {"repository-uri": f"{proxy}/team/je", "base_image": f"{proxy}/base/tiny:multi",
               "env_build": "cluster"}
        result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code != 0 and len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert "the environment build Job reprun-env-" in line and "failed (exit code 1): " in line
    assert "/v2/team/je/blobs/uploads/ answered 403" in line and "read-only" in line
    run_dir = reprun.home / "runs" / reprun.last_record()["run_id"]
    assert "reprun-build: installing the lock" in (run_dir / "env-build.log").read_text()


def test_a_sweep_builds_the_environment_once_for_every_trial(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    """The later trials find the first trial's environment layer in the registry."""
    _index(registry, "base/tiny", {"os": "linux", "architecture": "amd64"})
    project = python_env_project(make_project, "sweepenv")
    text = (project / "MLproject").read_text().replace(
        'command: "python greet.py docker"',
        'parameters: {k: {type: int, default: 0}}\n    command: "echo score: {k}"')
    (project / "MLproject").write_text(text)
    cfg = {"repository-uri": f"{registry}/team/sw", "base_image": f"{registry}/base/tiny:multi",
           "env_build": "cluster", "poll_seconds": 0.3}
    result = reprun("sweep", str(project), "-P", "k=1..3", "--parallel", "3", "--backend",
                    "kubernetes", "--backend-config", json.dumps(cfg),
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path), **no_docker_package},
                    timeout=300)
    assert result.code == 0, result.stderr
    names = [j["metadata"]["name"] for j in fake_kube.created_jobs]
    assert sum(n.startswith("reprun-env-") for n in names) == 1, names
    assert len(names) == 4  # the build Job and one Job per trial
    assert result.stderr.count("image builder: registry") == 1


def test_a_base_on_another_registry_is_copied_blob_by_blob(
        reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject, registry: str,
        no_docker_package: dict[str, str]) -> None:
    """The base is read through a second address (a proxy: another registry to reprun), so its
    layers cannot be mounted: they are streamed into the target repository."""
    _index(registry, "base/tiny", {"os": "linux", "architecture": "amd64"})
    project = make_project("name: copied\nentry_points:\n  main:\n    command: echo ran\n")
    with serving(cutting_proxy(registry, ["no cut"])) as other:
        cfg = {"repository-uri": f"{registry}/team/copied",
               "base_image": f"{other}/base/tiny:multi"}
        result = kube_run(reprun, fake_kube, project, cfg, no_docker_package)
    assert result.code == 0, result.stderr
    facts = reprun.last_record()["backend"]["facts"]
    client = Registry(registry)
    found = client.manifest("team/copied", facts["image_digest"])
    assert found is not None
    manifest = json.loads(found[1])
    for item in [manifest["config"], *manifest["layers"]]:
        assert client.has_blob("team/copied", item["digest"])
    assert len(manifest["layers"]) == 2  # the base's and the code
    assert facts["base_image_id"].startswith(f"{other}/base/tiny@sha256:")
