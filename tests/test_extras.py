"""``pip install reprun`` (no extra): local python_env runs work, and every feature whose extra is
missing is one line naming the install command, exit 2.

The core venv is built once per test session (shared by the xdist workers, under pytest's base
temp folder) by installing this checkout without extras, exactly as a user would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from condapkgs import standard_channel
from conftest import EXAMPLES, MakeProject, Reprun, init_repo
from test_conda import conda_project

ROOT = Path(__file__).resolve().parent.parent
EXTRA_MODULES = ("docker", "kubernetes", "rattler", "conda_lock", "plotly")


def _line(extra: str, feature: str) -> str:
    return f"reprun: error: {feature} need the {extra} extra: pip install 'reprun[{extra}]'\n"


CONDA_LINE = _line("conda", "conda environments")
DOCKER_LINE = _line("docker", "Docker image builds, pulls and pushes")
KUBERNETES_LINE = _line("kubernetes", "Kubernetes runs")
UI_LINE = _line("ui", "web views (reprun ui)")


def _last_line(stderr: str) -> str:
    """The error line, the only one that says error (the run's progress lines come first)."""
    assert stderr.count("error") == 1, stderr
    return stderr.splitlines(keepends=True)[-1]


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def core_dependencies() -> list[str]:
    """``[project].dependencies`` of pyproject.toml: what ``pip install reprun`` installs."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies: list[str] = data["project"]["dependencies"]
    return dependencies


@pytest.fixture(scope="session")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv holding reprun's core dependencies and, on its path, this checkout
    (as ``pip install -e .`` without extras would, less the wheel build); built once per
    session, shared by the xdist workers."""
    shared = tmp_path_factory.getbasetemp().parent  # one folder for every xdist worker
    venv = shared / "reprun-core-venv"
    python = venv / "bin" / "python"
    with _exclusive(shared / "reprun-core-venv.lock"):
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 *core_dependencies()], capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr[-2000:]
            site = next(venv.glob("lib/python*/site-packages"))
            (site / "reprun-checkout.pth").write_text(f"{ROOT}\n")
            (venv / ".complete").write_text("ok\n")
    return python


class CoreReprun(Reprun):
    """The CLI run by the core venv's python."""

    def __init__(self, home: Path, cwd: Path, python: Path) -> None:
        super().__init__(home, cwd)
        self.python = python

    def argv(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "runner", *args]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = super().env(extra)
        env.pop("VIRTUAL_ENV", None)
        return env


@pytest.fixture
def core(reprun: Reprun, core_python: Path) -> CoreReprun:
    """Same store as ``reprun`` (the full install), run without extras."""
    return CoreReprun(reprun.home, reprun.cwd, core_python)


def test_the_core_venv_has_none_of_the_extras(core_python: Path) -> None:
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None "
            f"for m in {EXTRA_MODULES!r}}}))")
    done = subprocess.run([str(core_python), "-c", code], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout) == dict.fromkeys(EXTRA_MODULES, False)


def test_python_env_runs_validate_and_schemas_need_no_extra(core: CoreReprun,
                                                            tmp_path: Path) -> None:
    project = tmp_path / "python-env"
    shutil.copytree(EXAMPLES / "python-env", project)
    result = core("run", str(project), "-q")
    assert result.code == 0, result.stderr
    assert "Hello, world!" in result.stdout
    assert core("validate", str(project)).code == 0
    listed = core("env", "list")
    assert listed.code == 0, listed.stderr
    (tmp_path / "s").mkdir()
    schemas = subprocess.run([str(core.python), "-m", "runner.schemas", str(tmp_path / "s")],
                             capture_output=True, text=True, check=False, cwd=ROOT)
    assert schemas.returncode == 0, schemas.stderr
    assert (tmp_path / "s" / "kubernetes-config.schema.json").is_file()


def test_a_conda_project_is_one_line_naming_the_conda_extra(
        core: CoreReprun, make_project: MakeProject, tmp_path: Path) -> None:
    channel = standard_channel(tmp_path / "channel")
    project = conda_project(make_project, [channel], ["hello-tool"])
    result = core("run", str(project))
    assert result.code == 2, result.stderr
    assert _last_line(result.stderr) == CONDA_LINE  # after "run ... started"
    refreshed = core("env", "refresh", str(project))
    assert (refreshed.code, refreshed.stderr) == (2, CONDA_LINE)


def test_reproducing_a_conda_run_needs_the_extra_only_to_rebuild_its_prefix(
        reprun: Reprun, core: CoreReprun, make_project: MakeProject, tmp_path: Path) -> None:
    """A built prefix runs with the core (its activation is in its marker); rebuilding one from
    the recorded lock needs rattler."""
    channel = standard_channel(tmp_path / "channel")
    project = conda_project(make_project, [channel], ["hello-tool"], command="hello-tool")
    first = reprun("run", str(project))
    assert first.code == 0, first.stderr
    run_id = reprun.last_record()["run_id"]

    cached = core("reproduce", run_id)
    assert cached.code == 0, cached.stderr
    assert "hello-tool 2.0" in cached.stdout
    exported = core("export", run_id, "-o", str(tmp_path / "run.reprun"))
    assert exported.code == 0, exported.stderr

    shutil.rmtree(reprun.home / "cache" / "conda")
    rebuilt = core("reproduce", run_id)
    assert rebuilt.code == 2, rebuilt.stderr
    assert _last_line(rebuilt.stderr) == CONDA_LINE


def test_kubernetes_runs_are_one_line_and_a_dry_run_needs_no_client(
        core: CoreReprun, make_project: MakeProject) -> None:
    project = make_project("name: k\nentry_points:\n  main:\n    command: echo hi\n")
    config = json.dumps({"image": "registry.example/team/img@sha256:" + "0" * 64})
    args = ("run", str(project), "--backend", "kubernetes", "--backend-config", config)
    preview = core(*args, "--dry-run")
    assert preview.code == 0, preview.stderr
    assert "kind: Job" in preview.stdout
    result = core(*args)
    assert (result.code, result.stderr) == (2, KUBERNETES_LINE)


@pytest.mark.docker
def test_a_built_image_runs_without_the_docker_sdk_and_a_build_names_the_extra(
        reprun: Reprun, core: CoreReprun, make_project: MakeProject, base_image: str,
        image_repo: str, docker_client: Any) -> None:
    project = make_project(f"name: {image_repo}\nentry_points:\n  main:\n"
                           "    command: python train.py\n",
                           {"train.py": "print('trained v1')\n"}, name=image_repo)
    init_repo(project)
    args = ("run", str(project), "--backend", "docker", "--docker-base-image", base_image)
    built = reprun(*args)
    assert built.code == 0, built.stderr
    image_id = reprun.last_record()["backend"]["docker"]["image_id"]
    try:
        cached = core(*args)
        assert cached.code == 0, cached.stderr
        assert "trained v1" in cached.stdout
        assert core.last_record()["backend"]["docker"]["image_id"] == image_id

        (project / "train.py").write_text("print('trained v2')\n")  # a new code layer
        changed = core(*args)
        assert changed.code == 2, changed.stderr
        assert _last_line(changed.stderr) == DOCKER_LINE
    finally:
        docker_client.images.remove(image_id, force=True, noprune=True)


def test_the_web_view_is_one_line_naming_the_ui_extra(core: CoreReprun) -> None:
    """Without plotly, ``reprun ui`` says which extra to install, before it listens; the other
    commands that read the store need nothing."""
    result = core("ui", "--port", "0")
    assert (result.code, result.stderr, result.stdout) == (2, UI_LINE, "")
    assert core("runs", "list", "--json").code == 0


@pytest.mark.docker
def test_a_docker_env_run_without_the_docker_extra_is_one_line_and_no_run(
        core: CoreReprun, make_project: MakeProject, base_image: str) -> None:
    project = make_project("name: d\ndocker_env:\n  image: reprun-test/never-built:1\n"
                           "entry_points:\n  main:\n    command: echo hi\n")
    result = core("run", str(project))
    assert (result.code, result.stderr) == (2, DOCKER_LINE)
    assert core("runs", "list", "--json").json() == []
