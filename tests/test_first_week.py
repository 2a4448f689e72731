"""Issue 26: what a new user trips over in the first week; one test (or a few) per item."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject, Reprun, init_repo

PROJECT = """
name: demo
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
    command: "echo alpha={alpha} l1={l1_ratio}"
"""


def one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("reprun: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def no_runs(reprun: Reprun) -> None:
    listed = reprun("runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json() == []


@pytest.fixture
def demo(make_project: MakeProject) -> Path:
    return make_project(PROJECT)


# 1. undeclared parameter names

def test_distance_counts_a_transposition_as_one_edit() -> None:
    from runner.spec.names import distance, nearest

    assert distance("alpah", "alpha") == 1
    assert distance("alpha", "alpha") == 0
    assert distance("l1ratio", "l1_ratio") == 1
    assert distance("beta", "alpha") > 2
    assert nearest("alpah", ["l1_ratio", "alpha"]) == ["alpha"]
    assert nearest("zzz", ["l1_ratio", "alpha"]) == []


def test_a_misspelled_parameter_is_refused(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "-P", "alpah=0.3")
    assert result.code == 2, result.stderr
    assert "did you mean 'alpha'?" in one_error(result.stderr)
    no_runs(reprun)


def test_strict_refuses_every_undeclared_name(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "--strict", "-P", "verbose=1")
    assert result.code == 2, result.stderr
    assert "'verbose'" in one_error(result.stderr)
    no_runs(reprun)


def test_other_undeclared_names_pass_on_with_one_notice(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "-P", "verbose=1")
    assert result.code == 0, result.stderr
    assert "alpha=0.5 l1=0.1 --verbose 1" in result.stdout
    notices = [line for line in result.stderr.splitlines() if "verbose" in line]
    assert len(notices) == 1, result.stderr
    assert "not declared" in notices[0]


@pytest.mark.parametrize("name", ["alpah", "verbose"])
def test_a_sweep_refuses_undeclared_names(reprun: Reprun, demo: Path, name: str) -> None:
    result = reprun("sweep", str(demo), "-P", f"{name}=0.1,0.3")
    assert result.code == 2, result.stderr
    assert f"'{name}'" in one_error(result.stderr)
    no_runs(reprun)


# 3. data kept out of the snapshot (or out of git) is compared with the disk where it was

@pytest.mark.parametrize("kind", ["snapshot", "git"])
def test_ignored_data_reproduces_from_where_it_was(reprun: Reprun, make_project: MakeProject,
                                                   kind: str) -> None:
    ignore = ".reprunignore" if kind == "snapshot" else ".gitignore"
    project = make_project(
        "data: [data/in.csv]\nentry_points:\n  main:\n"
        "    command: 'cp data/in.csv \"$REPRUN_OUTPUT_DIR/copy.csv\"'\n",
        files={"data/in.csv": "a,b\n1,2\n", ignore: "data/in.csv\n"})
    if kind == "git":
        init_repo(project)
    assert reprun("run", str(project), "-q").code == 0
    original = reprun.last_record()
    assert original["inputs"][0]["path"] == "data/in.csv"

    result = reprun("reproduce", original["run_id"], "--check")
    assert result.code == 0, result.stderr
    assert "outputs identical" in result.stderr
    assert reprun.last_record()["reproduction"]["input_drift"] == []

    (project / "data" / "in.csv").write_text("a,b\n3,4\n")
    result = reprun("reproduce", original["run_id"])
    assert result.code != 0
    line = one_error(result.stderr)
    assert "data/in.csv (changed)" in line, line
    assert len(reprun("runs", "list", "--json").json()) == 2


# 6. --docker-base-image runs a docker_env project on another image (recorded as an override)

@pytest.mark.docker
def test_docker_base_image_replaces_docker_env_image(reprun: Reprun, make_project: MakeProject,
                                                    base_image: str) -> None:
    project = make_project("name: offline\ndocker_env:\n  image: reprun-test/not-here:1\n"
                           "entry_points:\n  main:\n    command: python -c 'print(40 + 2)'\n")
    result = reprun("run", str(project), "--docker-base-image", base_image)
    assert result.code == 0, result.stderr
    assert "42" in result.stdout
    docker = reprun.last_record()["backend"]["docker"]
    assert docker["base_image"] == base_image
    assert docker["base_image_replaces"] == "reprun-test/not-here:1"
    again = reprun("reproduce", reprun.last_record()["run_id"])
    assert again.code == 0, again.stderr
    assert reprun.last_record()["backend"]["docker"]["base_image"] == base_image


def test_docker_base_image_cannot_replace_a_dockerfile(reprun: Reprun,
                                                       make_project: MakeProject) -> None:
    project = make_project("name: built\ndocker_env:\n  dockerfile: Dockerfile\n"
                           "entry_points:\n  main:\n    command: echo hi\n",
                           files={"Dockerfile": "FROM scratch\n"})
    result = reprun("run", str(project), "--docker-base-image", "python:3.11-slim", "--dry-run")
    assert result.code == 2, result.stderr
    line = one_error(result.stderr)
    assert "--docker-base-image" in line and "docker_env.dockerfile" in line, line


# 13. a warning about a project from a URL names its file in the repository, and the URL

def test_warnings_of_a_url_project_name_the_file_in_the_repository(
        reprun: Reprun, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "examples" / "demo").mkdir(parents=True)
    (repo / "examples" / "demo" / "MLproject").write_text(
        "name: demo\nentry_points:\n  main:\n    command: echo hi\n    colour: blue\n")
    init_repo(repo)
    url = f"file://{repo}"
    result = reprun("run", f"{url}#examples/demo", "--dry-run")
    assert result.code == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "colour" in line]
    assert "checkouts" not in warning, warning
    assert f"examples/demo/MLproject:5 (in {url})" in warning, warning


# 14. a tracking URI whose server answers 404 to MLflow's API

def test_a_server_without_mlflows_api_is_asked_about(reprun: Reprun, demo: Path) -> None:
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def _404(self) -> None:
            self.send_error(404)

        do_GET = do_POST = _404

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = reprun("run", str(demo), "--tracking-uri", url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 0, result.stderr  # the run goes on; its MLflow run is made later
    [line] = [line for line in result.stderr.splitlines() if "HTTP 404" in line]
    assert "is this an MLflow tracking server?" in line, line


# 11. a python version that is not installed is named in the file it came from

def test_a_missing_python_of_conda_yaml_names_conda_yaml(reprun: Reprun,
                                                         make_project: MakeProject) -> None:
    project = make_project("name: c\nconda_env: conda.yaml\nentry_points:\n"
                           "  main:\n    command: python -V\n",
                           files={"conda.yaml": "name: c\ndependencies:\n  - python=3.4\n"})
    result = reprun("run", str(project), "--env-manager", "uv")
    assert result.code != 0, result.stderr
    line = one_error(result.stderr)
    assert "Python 3.4" in line and "conda.yaml" in line, line
    assert "python_env.yaml" not in line, line
