"""The pipelines of an MLproject as a graph: references, order, and the checks of ``validate``.

A step's parameter value may hold ``{STEP.outputs}`` (that step's output directory, which makes
STEP run first) and ``{name}`` (a parameter of the pipeline); ``needs: [STEP]`` orders steps
without a reference. Everything here is pure: no files, no runs (`runner.pipeline` runs them).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

from runner.frozen import frozen
from runner.spec.types import MLProject, ParamType, Pipeline, check_value, placeholders

OUTPUTS = "outputs"
SCRIPT_SUFFIXES = (".py", ".sh")
KeyPath = tuple[str | int, ...]


@frozen
class Finding:
    """One mistake in a pipeline: where (a key path in the MLproject), what, how to fix it."""

    at: KeyPath
    message: str
    hint: str = ""
    warning: bool = False  # reported, and an error only with --strict


def step_reference(field: str) -> str | None:
    """``prep.outputs`` -> ``prep``; None for a field that is not ``STEP.outputs``."""
    step, dot, attribute = field.partition(".")
    return step if dot and attribute == OUTPUTS else None


def dependencies(pipeline: Pipeline) -> dict[str, list[str]]:
    """Each step -> the steps it needs (its ``needs`` and the steps whose outputs it reads)."""
    needed: dict[str, list[str]] = {}
    for name, step in pipeline.steps.items():
        found = list(step.needs)
        for value in step.parameters.values():
            try:
                fields = placeholders(value)
            except ValueError:
                continue
            found += [s for f in fields if (s := step_reference(f)) is not None]
        needed[name] = list(dict.fromkeys(found))
    return needed


def find_cycle(needed: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle of the graph (``[a, b, a]``), or None; unknown steps are ignored."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for after in needed.get(node, []):
            if after not in needed:
                continue
            if state.get(after) == 1:
                return [*path[path.index(after):], after]
            if after not in state:
                cycle = visit(after)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in needed:
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def substitute(value: str, params: Mapping[str, str], outputs: Mapping[str, Path]) -> str:
    """``value`` with ``{name}`` and ``{STEP.outputs}`` replaced (unquoted: a step's parameter
    value is quoted when the step's command is formed)."""
    parts: list[str] = []
    for literal, field, _spec, _conversion in string.Formatter().parse(value):
        parts.append(literal)
        if field is not None:
            step = step_reference(field)
            parts.append(str(outputs[step]) if step is not None else params[field])
    return "".join(parts)


def check_pipelines(project: MLProject) -> list[Finding]:
    """Every mistake in the pipelines of ``project``: the graph and the values' types."""
    findings: list[Finding] = []
    for name, pipeline in project.pipelines.items():
        at: KeyPath = ("pipelines", name)
        if name in project.entry_points:
            findings.append(Finding(at, f"'{name}' is also the name of an entry point",
                                    "rename the pipeline or the entry point: 'reprun run -e "
                                    "NAME' runs one of them"))
        for step_name in pipeline.steps:
            findings += _check_step(project, pipeline, step_name, (*at, "steps", step_name))
        used = {f for step in pipeline.steps.values() for v in step.parameters.values()
                for f in _fields(v)}
        findings += [Finding((*at, "parameters", p), f"pipeline parameter '{p}' is not used by "
                             "any step", f"pass it to a step as \"{{{p}}}\", or remove it",
                             warning=True)
                     for p in pipeline.parameters if p not in used]
        cycle = find_cycle(dependencies(pipeline))
        if cycle is not None and len(cycle) > 2:
            findings.append(Finding((*at, "steps"),
                                    f"the steps form a cycle: {' -> '.join(cycle)}",
                                    "a step may only read the outputs of steps before it"))
    return findings


def _check_step(project: MLProject, pipeline: Pipeline, name: str, at: KeyPath) -> list[Finding]:
    step = pipeline.steps[name]
    findings: list[Finding] = []
    for needed in step.needs:
        findings += _check_target(pipeline, name, needed, (*at, "needs"))
    entry = project.entry_points.get(step.entry_point)
    if entry is None and not step.entry_point.endswith(SCRIPT_SUFFIXES):
        declared = ", ".join(sorted(project.entry_points)) or "none"
        findings.append(Finding((*at, "entry_point"),
                                f"unknown entry point '{step.entry_point}'",
                                f"choose one of: {declared}, or a .py or .sh file"))
    for param, value in step.parameters.items():
        where = (*at, "parameters", param)
        try:
            fields = placeholders(value)
        except ValueError as exc:
            findings.append(Finding(where, f"'{value}': {exc}",
                                    "write {{ and }} for literal braces"))
            continue
        for field in fields:
            findings += _check_field(pipeline, name, field, where)
        decl = entry.parameters.get(param) if entry is not None else None
        if entry is not None and decl is None:
            declared = ", ".join(sorted(entry.parameters)) or "none"
            findings.append(Finding(where, f"entry point '{step.entry_point}' declares no "
                                           f"parameter '{param}' (it gets --{param} VALUE)",
                                    f"its parameters: {declared}", warning=True))
        if decl is not None:
            findings += _check_type(pipeline, value, fields, decl.type, decl.choices, where)
    if entry is not None:
        missing = [p for p, d in entry.parameters.items()
                   if d.required and p not in step.parameters]
        if missing:
            findings.append(Finding((*at, "parameters"),
                                    f"no value for required parameter(s) "
                                    f"{', '.join(missing)} of entry point '{step.entry_point}'",
                                    f"add {missing[0]}: VALUE under parameters"))
    return findings


def _fields(value: str) -> list[str]:
    try:
        return placeholders(value)
    except ValueError:
        return []


def _check_field(pipeline: Pipeline, name: str, field: str, at: KeyPath) -> list[Finding]:
    step = step_reference(field)
    if step is not None:
        return _check_target(pipeline, name, step, at)
    if "." in field:
        return [Finding(at, f"'{{{field}}}' is not a reference this file knows",
                        "write {STEP.outputs} (a step's output directory) or {name} (a "
                        "parameter of the pipeline)")]
    if field not in pipeline.parameters:
        declared = ", ".join(sorted(pipeline.parameters)) or "none"
        return [Finding(at, f"'{{{field}}}' is not a parameter of the pipeline "
                            f"(declared: {declared})",
                        f"declare {field} under the pipeline's parameters, or write {{{{ and "
                        "}} for literal braces")]
    return []


def _check_target(pipeline: Pipeline, name: str, target: str, at: KeyPath) -> list[Finding]:
    if target == name:
        return [Finding(at, f"step '{name}' refers to itself",
                        "a step can only read the outputs of another step")]
    if target not in pipeline.steps:
        steps = ", ".join(sorted(pipeline.steps))
        return [Finding(at, f"unknown step '{target}'", f"steps of this pipeline: {steps}")]
    return []


def _check_type(pipeline: Pipeline, value: str, fields: list[str], ptype: ParamType,
                choices: list[str] | None, at: KeyPath) -> list[Finding]:
    """A literal value of the wrong type, a pipeline parameter of another type, or a step's
    outputs given to a parameter that is no path."""
    if any(step_reference(f) is not None for f in fields):
        if ptype not in (ParamType.PATH, ParamType.STRING):
            return [Finding(at, f"a step's outputs are a path, but the parameter is declared "
                                f"{ptype.value}", "declare it with type path (or string)")]
        return []
    if not fields:
        reason = None if ptype is ParamType.PATH else check_value(ptype, value, choices)
        return [Finding(at, f"{reason} (declared type {ptype.value})",
                        "give a value of the entry point's type")] if reason else []
    if value == f"{{{fields[0]}}}" and fields[0] in pipeline.parameters:
        given = pipeline.parameters[fields[0]]
        if given.type is not ptype and ptype not in (ParamType.STRING, ParamType.PATH):
            return [Finding(at, f"pipeline parameter '{fields[0]}' is {given.type.value} but "
                                f"this parameter is declared {ptype.value}",
                            f"declare {fields[0]} with type {ptype.value}")]
    return []
