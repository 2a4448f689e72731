"""`pipelines:` in an MLproject: the graph and the values checked by `reprun validate` (one line
each, naming the file, the key and the fix) and by `reprun run` (exit code 2)."""

from __future__ import annotations

import pytest
from conftest import MakeProject, Reprun

ENTRY_POINTS = """\
name: steps
entry_points:
  prep:
    parameters: {raw: {type: string, default: x}}
    command: "echo prep {raw}"
  train:
    parameters: {data: path, alpha: {type: float, default: 0.5}, n: {type: int, default: 1}}
    command: "echo train {data} {alpha} {n}"
pipelines:
  all:
    parameters: {alpha: {type: float, default: 0.5}, label: {type: string, default: a}}
    steps:
"""

GOOD = """\
      prep: {entry_point: prep}
      train: {entry_point: train, parameters: {data: "{prep.outputs}/c.csv", alpha: "{alpha}"}}
"""

BAD = {
    "unknown step": (
        '      train: {entry_point: train, parameters: {data: "{prep.outputs}/c.csv"}}\n',
        "pipelines.all.steps.train.parameters.data: unknown step 'prep'; steps of this "
        "pipeline: train"),
    "cycle": (
        '      a: {entry_point: train, parameters: {data: "{b.outputs}/c"}}\n'
        '      b: {entry_point: train, parameters: {data: "{a.outputs}/c"}}\n',
        "pipelines.all.steps: the steps form a cycle: a -> b -> a; a step may only read the "
        "outputs of steps before it"),
    "self reference": (
        '      a: {entry_point: train, parameters: {data: "{a.outputs}/c"}}\n',
        "pipelines.all.steps.a.parameters.data: step 'a' refers to itself; a step can only "
        "read the outputs of another step"),
    "unknown needs": (
        '      a: {entry_point: prep, needs: [zz]}\n',
        "pipelines.all.steps.a.needs: unknown step 'zz'; steps of this pipeline: a"),
    "unknown entry point": (
        '      a: {entry_point: trian}\n',
        "pipelines.all.steps.a.entry_point: unknown entry point 'trian'; choose one of: prep, "
        "train, or a .py or .sh file"),
    "wrong type literal": (
        '      p: {entry_point: prep}\n'
        '      a: {entry_point: train, parameters: {data: "{p.outputs}/c", n: many}}\n',
        "pipelines.all.steps.a.parameters.n: 'many' is not a whole number (declared type int); "
        "give a value of the entry point's type"),
    "wrong type parameter": (
        '      p: {entry_point: prep}\n'
        '      a: {entry_point: train, parameters: {data: "{p.outputs}/c", n: "{alpha}"}}\n',
        "pipelines.all.steps.a.parameters.n: pipeline parameter 'alpha' is float but this "
        "parameter is declared int; declare alpha with type int"),
    "outputs to a number": (
        '      p: {entry_point: prep}\n'
        '      a: {entry_point: train, parameters: {data: "{p.outputs}/c", n: "{p.outputs}"}}\n',
        "pipelines.all.steps.a.parameters.n: a step's outputs are a path, but the parameter is "
        "declared int; declare it with type path (or string)"),
    "unknown name": (
        '      a: {entry_point: prep, parameters: {raw: "{beta}"}}\n',
        "pipelines.all.steps.a.parameters.raw: '{beta}' is not a parameter of the pipeline "
        "(declared: alpha, label); declare beta under the pipeline's parameters, or write {{ "
        "and }} for literal braces"),
    "missing required": (
        '      a: {entry_point: train}\n',
        "pipelines.all.steps.a.parameters: no value for required parameter(s) data of entry "
        "point 'train'; add data: VALUE under parameters"),
}


def test_a_good_pipeline_validates(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(ENTRY_POINTS + GOOD)
    result = reprun("validate", str(project))
    assert result.code == 0, result.stdout + result.stderr
    assert "pipelines all" in result.stdout


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_pipeline_is_one_line_naming_file_key_and_fix(
        reprun: Reprun, make_project: MakeProject, case: str) -> None:
    steps, expected = BAD[case]
    project = make_project(ENTRY_POINTS + steps)
    result = reprun("validate", str(project))
    assert result.code == 2
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith(f"error: {project / 'MLproject'}:")
    assert errors[0].endswith(expected), errors[0]


def test_run_refuses_a_bad_pipeline(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(ENTRY_POINTS + BAD["cycle"][0])
    result = reprun("run", str(project), "-e", "all")
    assert result.code == 2
    assert len(result.error_lines) == 1
    assert "the steps form a cycle: a -> b -> a" in result.error_lines[0]


def test_a_pipeline_named_like_an_entry_point(reprun: Reprun,
                                               make_project: MakeProject) -> None:
    text = ENTRY_POINTS.replace("  all:\n", "  prep:\n") + GOOD
    result = reprun("validate", str(make_project(text)))
    assert result.code == 2
    assert "pipelines.prep: 'prep' is also the name of an entry point; rename" in result.stdout


def test_warnings_for_an_undeclared_step_parameter_and_an_unused_pipeline_parameter(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(ENTRY_POINTS + GOOD.replace('alpha: "{alpha}"', 'alpah: "{alpha}"'))
    result = reprun("validate", str(project))
    assert result.code == 0, result.stdout
    warnings = [x for x in result.stdout.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 2, result.stdout
    assert warnings[0].endswith("pipelines.all.steps.train.parameters.alpah: entry point "
                                "'train' declares no parameter 'alpah' (it gets --alpah VALUE); "
                                "its parameters: alpha, data, n")
    assert warnings[1].endswith("pipelines.all.parameters.label: pipeline parameter 'label' is "
                                "not used by any step; pass it to a step as \"{label}\", or "
                                "remove it")
    strict = reprun("validate", "--strict", str(project))
    assert strict.code == 2
