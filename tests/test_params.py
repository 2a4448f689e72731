"""Commands are formed exactly as MLflow forms them; values are typed and validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject

from runner.errors import ParameterError, SpecError, UsageError
from runner.spec.params import parse_param_args, resolve
from runner.spec.project import load_project


def command_of(project: Path, given: dict[str, str], entry: str = "main",
               cwd: Path | None = None) -> str:
    loaded = load_project(project)
    return resolve(loaded.entry_point(entry), given, cwd or project).command


def test_values_are_quoted_and_extras_appended_in_order(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters:
              name: string
              greeting: {type: string, default: hi}
            command: "python greeter.py {greeting} {name}"
    """)
    given = {"name": "friend; echo 'pwned'", "excitement": "10", "extra key": "a b"}
    assert command_of(project, given) == (
        "python greeter.py hi 'friend; echo '\"'\"'pwned'\"'\"''"
        " --excitement 10 --'extra key' 'a b'"
    )


@pytest.mark.parametrize(
    ("default", "text"),
    [("0.00001", "1e-05"), ("1e-1", "1e-1"), (".0", "0.0"), ("yes", "True"), ("010", "8"),
     ("0.1", "0.1"), ("'quoted'", "quoted"), ("false", "False")],
)
def test_defaults_follow_yaml_typing_then_str(make_project: MakeProject, default: str,
                                              text: str) -> None:
    project = make_project(f"""
        entry_points:
          main:
            parameters:
              x: {{default: {default}}}
            command: "echo {{x}}"
    """)
    assert command_of(project, {}) == f"echo {text}"


def test_literal_braces_and_hyphenated_names(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters:
              batch-size: {type: int, default: 64}
            command: "python -c 'print({{1: 2}})' --batch-size {batch-size}"
    """)
    assert command_of(project, {}) == "python -c 'print({1: 2})' --batch-size 64"


def test_unused_declared_parameter_is_not_appended(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters:
              seed: {type: int, default: 1}
            command: "python train.py"
    """)
    loaded = load_project(project)
    resolved = resolve(loaded.entry_point("main"), {}, project)
    assert resolved.command == "python train.py"
    assert dict(resolved.values) == {"seed": "1"}


def test_user_values_pass_through_unchanged(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters: {lr: float, n: int, "on": bool, src: uri}
            command: "run {lr} {n} {on} {src}"
    """)
    given = {"lr": "1e-3", "n": "-2", "on": "TRUE", "src": "s3://b/k"}
    assert command_of(project, given) == "run 1e-3 -2 TRUE s3://b/k"


def test_path_is_absolute_against_the_callers_directory(make_project: MakeProject,
                                                        tmp_path: Path) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters: {data: path}
            command: "wc -l {data}"
    """)
    caller = tmp_path / "caller dir"
    (caller / "sub").mkdir(parents=True)
    (caller / "sub" / "d.csv").write_text("x\n")
    expected = str(caller / "sub" / "d.csv")
    assert command_of(project, {"data": "sub/d.csv"}, cwd=caller) == f"wc -l '{expected}'"
    assert command_of(project, {"data": f"file://{expected}"}, cwd=caller) == f"wc -l '{expected}'"
    with pytest.raises(ParameterError, match="remote location"):
        command_of(project, {"data": "s3://bucket/d.csv"}, cwd=caller)


def test_scripts_without_mlproject(make_project: MakeProject) -> None:
    project = make_project(files={"my script.py": "", "run.sh": ""})
    assert command_of(project, {"lr": "0.1"}, entry="my script.py") == (
        "python 'my script.py' --lr 0.1"
    )
    assert command_of(project, {}, entry="run.sh") == "bash run.sh"


def test_param_args_split_on_first_equals() -> None:
    assert parse_param_args(["a=b=c", "empty="]) == {"a": "b=c", "empty": ""}
    with pytest.raises(UsageError, match="malformed"):
        parse_param_args(["=x"])


def test_choice_needs_choices_and_default_among_them(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters:
              mode: {type: choice, choices: [a, b], default: c}
            command: "echo {mode}"
    """)
    with pytest.raises(SpecError, match="default 'c' is not one of the choices a, b"):
        load_project(project)


def test_unknown_keys_warn_with_a_suggestion(make_project: MakeProject) -> None:
    project = make_project("""
        name: p
        entry_point:
          main: {command: x}
        entry_points:
          main:
            paramters: {a: float}
            parameters:
              b: {type: flot, defualt: 1}
            command: "echo {b}"
    """)
    loaded = load_project(project)
    rendered = [w.render() for w in loaded.warnings]
    assert any("MLproject:3: entry_point: unknown key" in r and "'entry_points'" in r
               for r in rendered)
    assert any("paramters" in r and "did you mean 'parameters'?" in r for r in rendered)
    assert any("unknown parameter type 'flot'" in r and "'float'" in r for r in rendered)
    assert any("defualt" in r and "'default'" in r for r in rendered)
    with pytest.raises(SpecError, match="--strict makes this an error"):
        load_project(project, strict=True)


def test_mlflow_type_aliases_and_any_case_file_name(make_project: MakeProject) -> None:
    project = make_project(files={"MLProject": """
        entry_points:
          main:
            parameters: {solver: {type: str, default: pinv}}
            command: "echo {solver}"
    """})
    loaded = load_project(project)
    assert loaded.spec_file is not None and loaded.spec_file.name == "MLProject"
    assert not loaded.warnings
    assert command_of(project, {}) == "echo pinv"


def test_unquoted_yaml_boolean_as_parameter_name(make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters: {on: bool}
            command: "run"
    """)
    with pytest.raises(SpecError, match=r"parameter name True is not text.*quote the name"):
        load_project(project)
