"""Each user mistake gives one clear line naming the file, key or value; exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject, Reprun

GOOD = """
name: demo
entry_points:
  main:
    parameters:
      alpha: float
      n: {type: int, default: 3}
      flag: {type: bool, default: false}
      mode: {type: choice, choices: [fast, slow], default: fast}
      src: {type: uri, default: "s3://bucket/key"}
      data: {type: path, default: data.csv}
    command: "echo {alpha} {n} {flag} {mode} {src} {data}"
  other:
    command: "echo other"
"""


def only_error(result: object) -> str:
    code, stderr = result.code, result.stderr  # type: ignore[attr-defined]
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("reprun: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture
def good(make_project: MakeProject) -> Path:
    return make_project(GOOD, files={"data.csv": "a,b\n"})


def test_yaml_syntax_error_names_the_line(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("name: x\nentry_points:\n  main:\n    command: [unclosed\n")
    line = only_error(reprun("run", str(project)))
    assert "MLproject:" in line and "YAML syntax error" in line
    assert "MLproject:5:" in line or "MLproject:4:" in line


def test_empty_mlproject(reprun: Reprun, make_project: MakeProject) -> None:
    line = only_error(reprun("run", str(make_project(""))))
    assert "MLproject" in line and "the file is empty" in line


def test_unknown_entry_point_lists_the_valid_ones(reprun: Reprun, good: Path) -> None:
    line = only_error(reprun("run", str(good), "-e", "trian", "-P", "alpha=1"))
    assert "unknown entry point 'trian'" in line
    assert "main, other" in line


def test_missing_required_parameter(reprun: Reprun, good: Path) -> None:
    line = only_error(reprun("run", str(good)))
    assert "'alpha'" in line and "-P alpha=VALUE" in line


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("alpha=abc", "parameter 'alpha': 'abc' is not a number"),
        ("n=2.5", "parameter 'n': '2.5' is not a whole number"),
        ("flag=maybe", "parameter 'flag': 'maybe' is not a boolean"),
        ("mode=medium", "parameter 'mode': 'medium' is not one of the choices fast, slow"),
        ("src=bucket/key", "parameter 'src': 'bucket/key' is not a URI"),
        ("data=nowhere.csv", "parameter 'data': no such file or directory: 'nowhere.csv'"),
    ],
)
def test_bad_parameter_values(reprun: Reprun, good: Path, param: str, expected: str) -> None:
    args = ["run", str(good), "-P", param]
    if not param.startswith("alpha"):
        args += ["-P", "alpha=0.5"]
    line = only_error(reprun(*args))
    assert expected in line


def test_undeclared_placeholder_is_a_load_error(reprun: Reprun,
                                                make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: python t.py {lr}\n")
    line = only_error(reprun("run", str(project), "--dry-run"))
    assert "MLproject:3: entry_points.main.command: uses {lr} but no such parameter" in line
    assert "{{" in line


def test_two_environment_keys(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(
        "python_env: python_env.yaml\nconda_env: conda.yaml\nentry_points: {}\n",
        files={"python_env.yaml": "dependencies: []\n", "conda.yaml": "dependencies: []\n"},
    )
    line = only_error(reprun("run", str(project)))
    assert "more than one environment is given (python_env, conda_env)" in line


def test_missing_env_file(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("conda_env: envs/conda.yaml\nentry_points:\n  main:\n    command: x\n")
    line = only_error(reprun("run", str(project)))
    assert "MLproject: conda_env: file 'envs/conda.yaml' not found" in line


def test_docker_env_without_image(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("docker_env:\n  volumes: []\nentry_points:\n  main:\n    command: x\n")
    line = only_error(reprun("run", str(project)))
    assert "MLproject:1: docker_env: 'image' or 'dockerfile' is required" in line


def test_unquoted_python_version(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: x\n",
                           files={"python_env.yaml": "python: 3.10\ndependencies: []\n"})
    line = only_error(reprun("run", str(project)))
    assert "python_env.yaml:1: python: the version must be quoted" in line


def test_project_path_that_does_not_exist(reprun: Reprun) -> None:
    line = only_error(reprun("run", "no/such/project"))
    assert "project directory 'no/such/project' does not exist" in line


def test_malformed_param(reprun: Reprun, good: Path) -> None:
    line = only_error(reprun("run", str(good), "-P", "alpha"))
    assert "malformed parameter '-P alpha'" in line and "name=value" in line


def test_same_param_twice(reprun: Reprun, good: Path) -> None:
    line = only_error(reprun("run", str(good), "-P", "alpha=1", "-P", "alpha=2"))
    assert "parameter 'alpha' is given twice" in line


def test_bad_default_is_caught_at_load_time(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(
        "entry_points:\n  main:\n    parameters:\n      lr: {type: float, default: fast}\n"
        "    command: echo {lr}\n"
    )
    line = only_error(reprun("run", str(project)))
    assert "MLproject:4: entry_points.main.parameters.lr: default 'fast' is not a number" in line


def test_script_entry_point_without_mlproject_needs_e(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project(files={"train.py": "print(1)\n"})
    line = only_error(reprun("run", str(project)))
    assert "unknown entry point 'main'" in line and "-e script.py" in line
    line = only_error(reprun("run", str(project), "-e", "missing.py"))
    assert "script 'missing.py' not found" in line


def test_unsupported_env_manager_and_backend(reprun: Reprun, good: Path) -> None:
    line = only_error(reprun("run", str(good), "-P", "alpha=1", "--env-manager", "bogus"))
    assert "unknown --env-manager 'bogus'" in line and "local" in line
    line = only_error(reprun("run", str(good), "-P", "alpha=1", "--backend", "nowhere"))
    assert "--backend nowhere is not a known backend" in line


def test_debug_shows_a_traceback(reprun: Reprun) -> None:
    result = reprun("--debug", "run", "no/such/project")
    assert result.code != 0
    assert "Traceback" in result.stderr
