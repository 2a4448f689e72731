"""The Python of a Docker run: asked of the base image, recorded, and what the lock is for."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun
from test_docker import python_env_project

pytestmark = pytest.mark.docker


def image_version(docker_client: Any, image: str) -> str:
    """The base image's own python3, asked as .ci/docker-setup.sh does."""
    out = docker_client.containers.run(
        image, ["python3", "-c", "import platform; print(platform.python_version())"],
        remove=True, network_mode="none")
    return str(out.decode().strip())


def test_a_docker_run_records_and_locks_for_the_image_python(
    reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str,
    docker_client: Any,
) -> None:
    expected = image_version(docker_client, base_image)
    project = python_env_project(make_project, image_repo)
    done = reprun("run", str(project), "--backend", "docker", "--docker-base-image", base_image)
    assert done.code == 0, done.stderr
    record = reprun.last_record()
    environment = record["environment"]
    assert environment["python_version"] == expected
    assert environment["python_executable"] == "/opt/reprun/venv/bin/python"
    assert [p["name"] for p in environment["packages"]] == ["greeting"]
    lock = (reprun.home / "runs" / record["run_id"] / environment["lock_file"]).read_text()
    assert f"# python: {expected}\n" in lock
    # the answer is kept by image id: a second project on the same image asks nothing again
    cached = list((reprun.home / "cache" / "image-python").glob("*.json"))
    assert len(cached) == 1
    assert expected in cached[0].read_text()


def test_the_lock_of_a_local_run_names_the_host_python(
    reprun: Reprun, make_project: MakeProject, image_repo: str,
) -> None:
    project = python_env_project(make_project, image_repo)
    done = reprun("run", str(project), "-q")
    assert done.code == 0, done.stderr
    record = reprun.last_record()
    lock = (reprun.home / "runs" / record["run_id"] / record["environment"]["lock_file"])
    assert f"# python: {platform.python_version()}\n" in lock.read_text()
    assert not (reprun.home / "cache" / "image-python").exists()


def test_an_image_without_python3_gives_no_version_and_leaves_no_container(
    tmp_path: Path, docker_client: Any, image_repo: str,
) -> None:
    import io
    import tarfile

    from backends import image_python

    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    tag = f"reprun/{image_repo}:empty"
    docker_client.api.import_image_from_data(empty.getvalue(), repository=f"reprun/{image_repo}",
                                             tag="empty")
    env = {**os.environ, "REPRUN_CACHE_DIR": str(tmp_path / "cache")}
    assert image_python("docker", tag, env) is None
    assert not docker_client.containers.list(all=True, filters={"ancestor": tag})
    assert not (tmp_path / "cache" / "image-python").exists()
