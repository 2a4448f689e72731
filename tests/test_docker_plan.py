"""Docker planning without an engine: names, .dockerignore, dry-run output, early errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import MakeProject, Reprun

from backends.docker.container import sanitise_name
from backends.docker.image import context_files

DOCKER_ENV = """
name: {name}
docker_env:
  image: example/base:1
  volumes: ["./data:/data:ro", "cache-volume:/cache"]
  environment: [VISIBLE_NAME, ["PAIR", "set here"]]
  gpus: all
  shm_size: 2g
  network: none
entry_points:
  main:
    command: "python train.py"
"""


def test_project_names_are_sanitised_into_image_names() -> None:
    assert sanitise_name("cuML RF test") == "cuml-rf-test"
    assert sanitise_name("My_Project.v2") == "my-project-v2"
    assert sanitise_name("  ***  ") == "project"


def test_dry_run_prints_dockerfile_and_container_settings(
    reprun: Reprun, make_project: MakeProject
) -> None:
    project = make_project(DOCKER_ENV.format(name="cuML RF test"), {"train.py": "print(1)\n"})
    (project / "data").mkdir()
    result = reprun("run", str(project), "--dry-run",
                    env={"VISIBLE_NAME": "value-that-must-not-show"})
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "backend:     docker" in out
    assert "image:       reprun/cuml-rf-test:<content hash>" in out
    assert "FROM example/base:1" in out
    assert "COPY project/ /workspace/cuml-rf-test/" in out
    assert f"mount:       {project / 'data'}:/data:ro" in out
    assert "mount:       cache-volume:/cache:rw" in out
    assert "VISIBLE_NAME, PAIR (names only)" in out
    assert "gpus:        all" in out and "shm_size:    2g" in out
    assert "value-that-must-not-show" not in out and "set here" not in out


def test_dry_run_json_of_a_plain_project_with_backend_docker(
    reprun: Reprun, make_project: MakeProject
) -> None:
    project = make_project(
        "name: plain\nentry_points:\n  main:\n    parameters: {f: path}\n    command: cat {f}\n",
        {"input.txt": "x\n"},
    )
    result = reprun("run", str(project), "--backend", "docker", "--docker-base-image",
                    "example/py:3", "-P", f"f={project / 'input.txt'}", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["environment"]["manager"] == "docker"
    docker = plan["docker"]
    assert docker["base_image"] == "example/py:3"
    assert docker["dockerfile_text"].splitlines()[1] == "FROM example/py:3"
    assert f"{project / 'input.txt'}:{project / 'input.txt'}:ro" in docker["mounts"]
    assert docker["command"][-1] == f"cat {project / 'input.txt'}"


def test_dry_run_with_backend_docker_does_not_import_the_docker_sdk(
    reprun: Reprun, make_project: MakeProject
) -> None:
    project = make_project(DOCKER_ENV.format(name="p"), {"train.py": ""})
    (project / "data").mkdir()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "run", str(project), "--dry-run"],
        env=reprun.env({"VISIBLE_NAME": "1"}), capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "backends.docker.container" in imported
    assert "docker" not in imported and "requests" not in imported


def test_missing_host_variables_are_all_listed(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        name: p
        docker_env:
          image: example/base:1
          environment: [FIRST_MISSING, PRESENT, SECOND_MISSING]
        entry_points: {main: {command: "true"}}
    """)
    result = reprun("run", str(project), env={"PRESENT": "1"})
    assert result.code == 2
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert "FIRST_MISSING, SECOND_MISSING" in line and "not set" in line
    assert "PRESENT," not in line


def test_docker_env_needs_image_or_dockerfile(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("name: p\ndocker_env:\n  volumes: []\n")
    result = reprun("run", str(project), "--dry-run")
    assert result.code == 2
    assert "'image' or 'dockerfile' is required" in result.error_lines[0]
    both = make_project("name: p\ndocker_env: {image: a, dockerfile: Dockerfile}\n", name="both")
    assert "not both" in reprun("run", str(both), "--dry-run").error_lines[0]
    missing = make_project("name: p\ndocker_env: {dockerfile: build/Dockerfile}\n", name="nofile")
    line = reprun("run", str(missing), "--dry-run").error_lines[0]
    assert "docker_env.dockerfile" in line and "build/Dockerfile" in line


def test_docker_env_with_local_backend_and_docker_manager_locally_are_errors(
    reprun: Reprun, make_project: MakeProject
) -> None:
    project = make_project("name: p\ndocker_env: {image: a}\n", {"x.py": ""})
    line = reprun("run", str(project), "-e", "x.py", "--backend", "local").error_lines[0]
    assert "use --backend docker" in line
    plain = make_project(None, {"x.py": ""}, name="plain")
    line = reprun("run", str(plain), "-e", "x.py", "--env-manager", "docker").error_lines[0]
    assert "add --backend docker" in line


def test_no_engine_says_how_to_set_docker_host(
    reprun: Reprun, make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project("name: p\ndocker_env: {image: a}\n", {"x.py": ""})
    socket = tmp_path / "nothing.sock"
    result = reprun("run", str(project), "-e", "x.py", env={"DOCKER_HOST": f"unix://{socket}"})
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert f"no Docker engine answers at unix://{socket}" in result.error_lines[0]
    assert "DOCKER_HOST=" in result.error_lines[0]
    assert reprun.last_record()["status"] == "FAILED"


def test_context_follows_dockerignore_and_never_ships_git(make_project: MakeProject) -> None:
    project = make_project(None, {
        ".dockerignore": "# comment\ndata/\n*.log\n!keep.log\n**/__pycache__\n/secret.txt\n",
        "train.py": "", "keep.log": "", "drop.log": "", "secret.txt": "",
        "data/big.bin": "", "pkg/__pycache__/m.pyc": "", "pkg/m.py": "", "pkg/secret.txt": "",
        ".git/HEAD": "", "nested/.gitkeep": "",
    })
    files = list(context_files(project))
    assert set(files) == {".dockerignore", "train.py", "keep.log", "pkg", "pkg/m.py",
                          "pkg/secret.txt", "nested", "nested/.gitkeep"}
