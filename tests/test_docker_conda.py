"""conda_env projects in Docker: the host's conda-lock.yml installed in the image with py-rattler.

The channel is a local file:// one (tests/condapkgs.py); the image build has no network, so
everything it installs comes from archives reprun fetched and checked on the host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from condapkgs import conda_package, index, standard_channel
from conftest import MakeProject, Reprun, assert_only_last_layer_differs

pytestmark = pytest.mark.docker

COMMAND = ("hello-tool && echo prefix=$CONDA_PREFIX activated=$ACT_VARS_ON && cat code.txt"
           " && echo \"greeting=$GREETING.\"")
GREETING = """a b 'c' "d" $HOME \\x"""


@pytest.fixture
def channel(tmp_path: Path) -> str:
    """The standard test channel plus a package whose activate.d script sets a variable."""
    folder = tmp_path / "channel"
    standard_channel(folder)
    script = b"export ACT_VARS_ON=yes\n"
    conda_package(folder, "act-vars", "1.0", {"etc/conda/activate.d/act-vars.sh": (script, 0o644)})
    return index(folder)


def conda_project(make_project: MakeProject, name: str, channel: str, deps: list[Any],
                  command: str = COMMAND) -> Path:
    conda = {"channels": [channel], "dependencies": deps, "variables": {"GREETING": GREETING}}
    mlproject = f"name: {name}\nconda_env: conda.yaml\nentry_points:\n  main:\n" \
                f"    command: {command!r}\n"
    project: Path = make_project(mlproject, {"conda.yaml": yaml.safe_dump(conda),
                                             "code.txt": "code v1\n"}, name=name)
    return project


def test_conda_project_runs_in_docker_from_the_local_lock(
    reprun: Reprun, make_project: MakeProject, channel: str, base_image: str, image_repo: str,
    docker_client: Any,
) -> None:
    project = conda_project(make_project, image_repo, channel, ["hello-tool", "act-vars"])
    local = reprun("run", str(project))
    assert local.code == 0, local.stderr
    local_record = reprun.last_record()
    args = ("run", str(project), "--backend", "docker", "--docker-base-image", base_image)

    first = reprun(*args)
    assert first.code == 0, first.stderr
    # The tool's prefix placeholder was patched for the image's prefix: rattler ran in the image.
    assert "hello-tool 2.0 (prefix /opt/reprun/conda)" in first.stdout
    assert "prefix=/opt/reprun/conda activated=yes" in first.stdout
    assert "code v1" in first.stdout
    assert f"greeting={GREETING}." in first.stdout and f"greeting={GREETING}." in local.stdout
    record = reprun.last_record()
    assert record["environment"]["manager"] == "conda"
    assert record["environment"]["lock_sha256"] == local_record["environment"]["lock_sha256"]
    run_dir = reprun.home / "runs" / record["run_id"]
    lock_text = (run_dir / "conda-lock.yml").read_text()
    assert hashlib.sha256(lock_text.encode()).hexdigest() == record["environment"]["lock_sha256"]
    dockerfile = (run_dir / "Dockerfile").read_text()
    assert dockerfile.index("install.py") < dockerfile.index("COPY project/")
    one = record["backend"]["docker"]
    assert one["built"] is True
    assert "installed 3 conda package(s) into /opt/reprun/conda" in \
        (run_dir / "docker-build.log").read_text()

    second = reprun(*args)
    assert second.code == 0, second.stderr
    assert "building image" not in second.stderr
    two = reprun.last_record()["backend"]["docker"]
    assert two["built"] is False and two["image_id"] == one["image_id"]

    (project / "code.txt").write_text("code v2\n")
    third = reprun(*args)
    assert third.code == 0, third.stderr
    assert "code v2" in third.stdout
    three = reprun.last_record()["backend"]["docker"]
    assert three["built"] is True and three["image_id"] != one["image_id"]
    assert_only_last_layer_differs(docker_client, one["image_id"], three["image_id"])
    build_log = reprun.home / "runs" / reprun.last_record()["run_id"] / "docker-build.log"
    assert "installed 3 conda package(s)" not in build_log.read_text()


def test_a_changed_archive_or_a_pip_section_is_refused(
    reprun: Reprun, make_project: MakeProject, tmp_path: Path, base_image: str,
    image_repo: str,
) -> None:
    folder = tmp_path / "chan"
    conda_package(folder, "tool", "1.0", {"bin/tool": (b"#!/bin/sh\necho one\n", 0o755)})
    channel = index(folder)
    project = conda_project(make_project, image_repo, channel, ["tool"], command="tool")
    assert reprun("run", str(project), "-q").code == 0  # locks (and installs) on the host
    archive = conda_package(folder, "tool", "1.0", {"bin/tool": (b"#!/bin/sh\necho two\n", 0o755)})
    args = ("run", str(project), "--backend", "docker", "--docker-base-image", base_image)
    result = reprun(*args)
    assert result.code != 0
    [line] = result.error_lines
    assert f"the conda package {channel}/noarch/{archive.name} has sha256 " in line
    assert "but the lock says" in line

    pip = conda_project(make_project, f"{image_repo}-pip", channel,
                        ["tool", {"pip": ["anything"]}], command="tool")
    lock = (reprun.home / "runs" / reprun.last_record()["run_id"] / "conda-lock.yml").read_text()
    data = yaml.safe_load(lock)
    data["package"].append({**data["package"][0], "name": "anything", "manager": "pip",
                            "url": "https://example.invalid/anything-1.0-py3-none-any.whl",
                            "hash": {"sha256": "0" * 64}})
    (pip / "conda-lock.yml").write_text(yaml.safe_dump(data))
    result = reprun("run", str(pip), "--backend", "docker", "--docker-base-image", base_image)
    assert result.code != 0
    [line] = result.error_lines
    assert "conda-lock.yml has a pip: section, which cannot be installed into a Docker image" \
        in line
