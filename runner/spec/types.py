"""A validated project as the rest of reprun uses it: frozen dataclasses, no pydantic.

`runner.spec.models` (pydantic) validates the files and is the source of truth for the format and
its JSON Schema; a file that passes is turned into these types with ``from_dump`` of the model's
dump. `runner.spec.project` keeps that dump in a cache keyed by the file's bytes, so a run of an
unchanged
project reads the dump and never imports pydantic or YAML. A test keeps the fields of each type
equal to those of its model.
"""

from __future__ import annotations

import math
import string
from dataclasses import field
from enum import Enum
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal
from urllib.parse import urlparse

from runner.frozen import frozen


class ParamType(str, Enum):
    STRING = "string"
    FLOAT = "float"
    PATH = "path"
    URI = "uri"
    INT = "int"
    BOOL = "bool"
    CHOICE = "choice"


# Spellings MLflow projects use in the wild that mean one of our types exactly.
TYPE_ALIASES = {"str": "string"}
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def yaml_scalar_text(value: Any) -> Any:
    """Turn a YAML scalar into text exactly as MLflow does (``str()``: 0.00001 -> '1e-05')."""
    if isinstance(value, bool | int | float):
        return str(value)
    return value


def check_value(ptype: ParamType, value: str, choices: list[str] | None = None) -> str | None:
    """Why ``value`` is not a valid ``ptype``, or None when it is. Paths are checked at run time."""
    if ptype is ParamType.FLOAT:
        try:
            number = float(value)
        except ValueError:
            return f"'{value}' is not a number"
        if math.isnan(number):
            return f"'{value}' is not a number"
    elif ptype is ParamType.INT:
        try:
            int(value)
        except ValueError:
            return f"'{value}' is not a whole number"
    elif ptype is ParamType.BOOL:
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            return f"'{value}' is not a boolean (use true or false)"
    elif ptype is ParamType.CHOICE:
        if value not in (choices or []):
            return f"'{value}' is not one of the choices {', '.join(choices or [])}"
    elif ptype is ParamType.URI and not urlparse(value).scheme:
        return f"'{value}' is not a URI: it needs a scheme such as file://, s3:// or https://"
    return None


def data_path_problem(item: str) -> str | None:
    """Why ``item`` (an entry of the MLproject's ``data:``) is not a path inside the project."""
    if not item.strip():
        return "an empty entry is not allowed"
    path = PurePosixPath(item.replace("\\", "/"))
    if path.is_absolute() or PureWindowsPath(item).drive:
        return f"'{item}' is absolute; give a path relative to the project (data/wine.csv)"
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return f"'{item}' leads out of the project; data must be inside the project directory"
    return None


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot read a metric from a line of output, or None when it can: it must
    compile and have one group, or a group named ``value`` (and optionally one named ``step``)."""
    import re  # compiled here only when an MLproject is validated

    import regex  # what matches it (runner/tracking/patterns.py)

    try:
        compiled = re.compile(pattern)
        regex.compile(pattern, regex.VERSION0)
    except (re.error, regex.error) as exc:
        return f"is not a valid regular expression: {exc}"
    names = set(compiled.groupindex)
    if names - {"value", "step"}:
        unknown = ", ".join(sorted(names - {"value", "step"}))
        return f"has named group(s) {unknown}; only 'value' and 'step' are understood"
    if "value" not in names and compiled.groups != 1:
        return (f"has {compiled.groups} groups; give exactly one group around the value, or name "
                "it (?P<value>...)")
    return None


def check_relative(path: str) -> str | None:
    """Why ``path`` is not a relative path that stays inside its directory, or None."""
    parts = path.replace("\\", "/").split("/")
    if not path.strip() or path.startswith(("/", "~")) or ":" in parts[0]:
        return "must be a path relative to REPRUN_OUTPUT_DIR"
    if ".." in parts:
        return "may not leave REPRUN_OUTPUT_DIR ('..')"
    return None


def placeholders(command: str) -> list[str]:
    """The ``{name}`` fields of a command; raises ValueError for malformed braces."""
    names: list[str] = []
    for _literal, name, spec, conversion in string.Formatter().parse(command):
        if name is None:
            continue
        if name == "":
            raise ValueError("'{}' is an empty placeholder; write {{}} for literal braces")
        if spec or conversion:
            raise ValueError(f"placeholder '{{{name}...}}' may not carry a format or conversion")
        names.append(name)
    return names


@frozen
class ParameterSpec:
    """One declared parameter of an entry point."""

    type: ParamType = ParamType.STRING
    default: str | None = None
    description: str | None = None
    choices: list[str] | None = None

    @property
    def required(self) -> bool:
        return self.default is None

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> ParameterSpec:
        choices = data.get("choices")
        return cls(ParamType(data.get("type", "string")), data.get("default"),
                   data.get("description"), list(choices) if choices is not None else None)


@frozen
class MetricsSpec:
    """How an entry point reports metrics without a library (a reprun key; MLflow ignores it)."""

    stdout: bool | dict[str, str] = False
    files: list[str] = field(default_factory=list)
    better: dict[str, Literal["min", "max"]] = field(default_factory=dict)

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> MetricsSpec:
        stdout = data.get("stdout", False)
        return cls(dict(stdout) if isinstance(stdout, dict) else bool(stdout),
                   list(data.get("files") or []), dict(data.get("better") or {}))


@frozen
class EntryPoint:
    """A named command with its declared parameters."""

    command: str
    parameters: dict[str, ParameterSpec] = field(default_factory=dict)
    metrics: MetricsSpec | None = None
    models: dict[str, str] = field(default_factory=dict)
    """Model name -> the file or folder of the outputs a finished run registers"""

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> EntryPoint:
        params = data.get("parameters") or {}
        metrics = data.get("metrics")
        return cls(data["command"], {k: ParameterSpec.from_dump(v) for k, v in params.items()},
                   MetricsSpec.from_dump(metrics) if metrics is not None else None,
                   dict(data.get("models") or {}))


EnvItem = str | tuple[str, str]


@frozen
class DockerEnv:
    """The ``docker_env`` section: MLflow's keys plus dockerfile, gpus, shm_size and network."""

    image: str | None = None
    dockerfile: str | None = None
    volumes: list[str] = field(default_factory=list)
    environment: list[EnvItem] = field(default_factory=list)
    gpus: Literal["all"] | int | None = None
    shm_size: str | None = None
    network: str | None = None

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> DockerEnv:
        environment: list[EnvItem] = [
            item if isinstance(item, str) else (str(item[0]), str(item[1]))
            for item in data.get("environment") or []
        ]
        return cls(data.get("image"), data.get("dockerfile"), list(data.get("volumes") or []),
                   environment, data.get("gpus"), data.get("shm_size"), data.get("network"))


@frozen
class PipelineStep:
    """One step of a pipeline: a run of an entry point (a reprun key; MLflow ignores it)."""

    entry_point: str
    parameters: dict[str, str] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    backend: str | None = None
    backend_config: str | dict[str, Any] | None = None

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> PipelineStep:
        config = data.get("backend_config")
        return cls(data["entry_point"], dict(data.get("parameters") or {}),
                   list(data.get("needs") or []), data.get("backend"),
                   dict(config) if isinstance(config, dict) else config)


@frozen
class Pipeline:
    """A graph of steps over the entry points of the project (a reprun key; MLflow ignores it)."""

    steps: dict[str, PipelineStep]
    parameters: dict[str, ParameterSpec] = field(default_factory=dict)

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> Pipeline:
        params = data.get("parameters") or {}
        return cls({k: PipelineStep.from_dump(v) for k, v in data["steps"].items()},
                   {k: ParameterSpec.from_dump(v) for k, v in params.items()})


@frozen
class MLProject:
    """An MLproject file, as MLflow Projects defines it."""

    name: str | None = None
    entry_points: dict[str, EntryPoint] = field(default_factory=dict)
    python_env: str | None = None
    conda_env: str | None = None
    docker_env: DockerEnv | None = None
    data: list[str] = field(default_factory=list)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> MLProject:
        docker = data.get("docker_env")
        return cls(
            data.get("name"),
            {k: EntryPoint.from_dump(v) for k, v in (data.get("entry_points") or {}).items()},
            data.get("python_env"), data.get("conda_env"),
            DockerEnv.from_dump(docker) if docker is not None else None,
            list(data.get("data") or []),
            {k: Pipeline.from_dump(v) for k, v in (data.get("pipelines") or {}).items()},
        )


@frozen
class PythonEnvFile:
    """python_env.yaml, in MLflow's format."""

    python: str | None = None
    build_dependencies: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> PythonEnvFile:
        return cls(data.get("python"), list(data.get("build_dependencies") or []),
                   list(data.get("dependencies") or []))


@frozen
class PipSection:
    """The ``- pip: [...]`` item of a conda.yaml dependency list."""

    pip: list[str]


@frozen
class CondaEnvFile:
    """conda.yaml (conda's environment.yml format), as MLflow projects use it."""

    name: str | None = None
    channels: list[str] = field(default_factory=list)
    dependencies: list[str | PipSection] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def conda_specs(self) -> list[str]:
        return [d.strip() for d in self.dependencies if isinstance(d, str)]

    @property
    def pip(self) -> list[str]:
        return next((list(d.pip) for d in self.dependencies if isinstance(d, PipSection)), [])

    @classmethod
    def from_dump(cls, data: dict[str, Any]) -> CondaEnvFile:
        dependencies: list[str | PipSection] = [
            item if isinstance(item, str) else PipSection(list(item["pip"]))
            for item in data.get("dependencies") or []
        ]
        return cls(data.get("name"), list(data.get("channels") or []), dependencies,
                   dict(data.get("variables") or {}))


@frozen
class ConvertedDependency:
    """One conda dependency of a conda.yaml installed from PyPI: as written, the requirement it
    became (None: nothing is installed for it) and what changed on the way."""

    conda: str
    pypi: str | None
    note: str | None = None


@frozen
class Conversion:
    """A conda.yaml read as a python_env (``--env-manager uv`` or ``virtualenv``)."""

    file: str  # relative to the project
    manager: str
    python: str | None
    entries: tuple[ConvertedDependency, ...]
    pip: tuple[str, ...]  # the pip: list, carried over as it is

    @property
    def requirements(self) -> tuple[str, ...]:
        """The requirement lines to resolve: the converted conda dependencies, then pip's."""
        return (*(e.pypi for e in self.entries if e.pypi is not None), *self.pip)
