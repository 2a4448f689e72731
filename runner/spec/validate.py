"""Validate one project file for real: YAML with line numbers, unknown keys, the pydantic models.

This is the slow path of `runner.spec.project` (YAML and pydantic are imported here): it runs when
a file
is not in the validated-file cache. Each function returns the model's JSON dump, from which
`runner.spec.types` makes the frozen dataclasses, and the warnings; errors raise `SpecError` with
one `Problem` per mistake, naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from runner.errors import Problem, SpecError
from runner.spec.models import (
    KNOWN_KEYS,
    TYPE_ALIASES,
    CondaEnvFile,
    MLProject,
    ParamType,
    PythonEnvFile,
)
from runner.spec.yamlfile import KeyPath, YamlDoc, load_yaml

Dump = dict[str, Any]


def validate_file(path: Path, kind: str, strict: bool) -> tuple[Dump, list[Problem]]:
    """The JSON dump of ``path`` validated as ``kind`` (mlproject, python_env_file,
    conda_env_file) and its warnings; with ``strict`` an environment file's unknown keys are
    errors (the MLproject's are made errors by the caller, after its other errors).
    """
    warnings: list[Problem] = []
    model: BaseModel
    if kind == "mlproject":
        model = _validate_mlproject(load_yaml(path), warnings)
    elif kind == "python_env_file":
        model = _load_python_env(path, warnings, strict)
    else:
        model = _load_conda_env(path, warnings, strict)
    return model.model_dump(mode="json"), warnings


def as_error(warning: Problem) -> Problem:
    return Problem(warning.file, warning.key, warning.message, warning.line,
                   (warning.hint + "; " if warning.hint else "") + "--strict makes this an error")


def _validate_mlproject(doc: YamlDoc, warnings: list[Problem]) -> MLProject:
    if doc.data is None:
        raise SpecError([doc.problem((), "the file is empty",
                                     "declare at least 'name' and 'entry_points', or delete it")])
    if not isinstance(doc.data, dict):
        raise SpecError([doc.problem((), f"must be a mapping of keys, not {_kind(doc.data)}")])
    data = _strip_unknown(doc, warnings)
    try:
        model = MLProject.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, doc)) from None
    if model.pipelines:
        from runner.spec.pipelines import check_pipelines
        from runner.spec.types import MLProject as Frozen

        findings = check_pipelines(Frozen.from_dump(model.model_dump(mode="json")))
        errors = [doc.problem(f.at, f.message, f.hint) for f in findings if not f.warning]
        if errors:
            raise SpecError(errors)
        warnings += [doc.problem(f.at, f.message, f.hint) for f in findings if f.warning]
    return model


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return type(value).__name__


def _strip_unknown(doc: YamlDoc, warnings: list[Problem]) -> dict[str, Any]:
    """A copy of the data without unknown keys, each reported as a warning."""
    data = _without_unknown(doc, (), dict(doc.data), KNOWN_KEYS["project"], warnings)
    entry_points = data.get("entry_points")
    if isinstance(entry_points, dict):
        _require_text_keys(doc, ("entry_points",), entry_points, "entry point")
        data["entry_points"] = {
            name: _clean_entry_point(doc, ("entry_points", name), ep, warnings)
            for name, ep in entry_points.items()
        }
    pipelines = data.get("pipelines")
    if isinstance(pipelines, dict):
        data["pipelines"] = {name: _clean_pipeline(doc, ("pipelines", name), p, warnings)
                             for name, p in pipelines.items()}
    docker = data.get("docker_env")
    if isinstance(docker, dict):
        data["docker_env"] = _without_unknown(
            doc, ("docker_env",), docker, KNOWN_KEYS["docker_env"], warnings
        )
    return data


def _clean_entry_point(doc: YamlDoc, at: KeyPath, ep: Any, warnings: list[Problem]) -> Any:
    if not isinstance(ep, dict):
        return ep
    ep = _without_unknown(doc, at, ep, KNOWN_KEYS["entry_point"], warnings)
    if isinstance(ep.get("metrics"), dict):
        ep["metrics"] = _without_unknown(doc, (*at, "metrics"), ep["metrics"],
                                         KNOWN_KEYS["metrics"], warnings)
    params = ep.get("parameters")
    if isinstance(params, dict):
        _require_text_keys(doc, (*at, "parameters"), params, "parameter")
        ep["parameters"] = {
            name: _clean_parameter(doc, (*at, "parameters", name), p, warnings)
            for name, p in params.items()
        }
    return ep


def _clean_pipeline(doc: YamlDoc, at: KeyPath, pipeline: Any, warnings: list[Problem]) -> Any:
    if not isinstance(pipeline, dict):
        return pipeline
    pipeline = _without_unknown(doc, at, pipeline, KNOWN_KEYS["pipeline"], warnings)
    params = pipeline.get("parameters")
    if isinstance(params, dict):
        _require_text_keys(doc, (*at, "parameters"), params, "parameter")
        pipeline["parameters"] = {
            name: _clean_parameter(doc, (*at, "parameters", name), p, warnings)
            for name, p in params.items()
        }
    steps = pipeline.get("steps")
    if isinstance(steps, dict):
        _require_text_keys(doc, (*at, "steps"), steps, "step")
        pipeline["steps"] = {
            name: _without_unknown(doc, (*at, "steps", name), step, KNOWN_KEYS["step"],
                                   warnings) if isinstance(step, dict) else step
            for name, step in steps.items()
        }
    return pipeline


def _require_text_keys(doc: YamlDoc, at: KeyPath, mapping: dict[Any, Any], what: str) -> None:
    for key in mapping:
        if not isinstance(key, str):
            raise SpecError([doc.problem(at, f"{what} name {key!r} is not text",
                                         "YAML reads unquoted on/off/yes/no/true/false and numbers "
                                         "as values: quote the name")])


def _clean_parameter(doc: YamlDoc, at: KeyPath, param: Any, warnings: list[Problem]) -> Any:
    if isinstance(param, str):
        return _known_type(doc, at, param, warnings)
    if isinstance(param, dict):
        param = _without_unknown(doc, at, param, KNOWN_KEYS["parameter"], warnings)
        if isinstance(param.get("type"), str):
            param["type"] = _known_type(doc, (*at, "type"), param["type"], warnings)
    return param


def _known_type(doc: YamlDoc, at: KeyPath, name: str, warnings: list[Problem]) -> str:
    """MLflow accepts any type name; an unknown one is a warning and means string."""
    valid = [t.value for t in ParamType]
    if name in valid or name in TYPE_ALIASES:
        return name
    warnings.append(doc.problem(at, f"unknown parameter type '{name}', treated as string",
                                _suggest(name, valid) or f"use one of {', '.join(valid)}"))
    return "string"


def _without_unknown(
    doc: YamlDoc, at: KeyPath, mapping: dict[Any, Any], known: frozenset[str],
    warnings: list[Problem],
) -> dict[Any, Any]:
    kept = {}
    for key, value in mapping.items():
        if key in known:
            kept[key] = value
        else:
            hint = _suggest(str(key), sorted(known)) or f"valid keys: {', '.join(sorted(known))}"
            warnings.append(doc.problem((*at, str(key)), f"unknown key '{key}' is ignored", hint))
    return kept


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def problems_from(exc: ValidationError, doc: YamlDoc) -> list[Problem]:
    """Pydantic errors as Problems that point at the file, line and key."""
    problems = []
    for error in exc.errors():
        keypath = _clean_loc(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message = f"{message} (got {error['input']!r})"
        problems.append(doc.problem(keypath, message))
    return _dedupe(problems)


def _clean_loc(loc: tuple[int | str, ...]) -> KeyPath:
    """Drop pydantic's union branch names (``str``, ``tuple[str, str]``) from a location."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str"})))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.key, problem.message), problem)
    return list(seen.values())



def _load_python_env(path: Path, warnings: list[Problem], strict: bool) -> PythonEnvFile:
    """Validate a python_env.yaml file."""
    data, doc = _env_mapping(path, "python_env_file", warnings, strict)
    try:
        return PythonEnvFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, doc)) from None


def _load_conda_env(path: Path, warnings: list[Problem], strict: bool) -> CondaEnvFile:
    """Validate a conda.yaml file (channels, dependencies with an optional pip: list)."""
    data, doc = _env_mapping(path, "conda_env_file", warnings, strict)
    deps = data.get("dependencies")
    if isinstance(deps, list):
        for index, item in enumerate(deps):
            if isinstance(item, dict) and set(item) != {"pip"}:
                keys = ", ".join(map(str, item))
                raise SpecError([doc.problem(("dependencies", index),
                                             f"a mapping here may only hold 'pip', not {keys}",
                                             "write conda packages as plain list items")])
            if isinstance(item, dict) and not isinstance(item["pip"], list):
                raise SpecError([doc.problem(("dependencies", index, "pip"),
                                             "must be a list of pip requirements",
                                             "write each requirement as a list item: - pip: "
                                             "[requests==2.32.3]")])
    try:
        return CondaEnvFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, doc)) from None


def _env_mapping(
    path: Path, kind: str, warnings: list[Problem], strict: bool
) -> tuple[dict[str, Any], YamlDoc]:
    """The top-level mapping of an environment file, without its unknown keys (warned about)."""
    doc = load_yaml(path)
    if doc.data is None:
        raise SpecError([doc.problem((), "the file is empty",
                                     "give at least 'dependencies' (a list of requirements)")])
    if not isinstance(doc.data, dict):
        raise SpecError([doc.problem((), f"must be a mapping of keys, not {_kind(doc.data)}")])
    local: list[Problem] = []
    data = _without_unknown(doc, (), dict(doc.data), KNOWN_KEYS[kind], local)
    if strict and local:
        raise SpecError([as_error(w) for w in local])
    warnings.extend(local)
    return data, doc
