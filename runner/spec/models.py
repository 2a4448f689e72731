"""Pydantic models of the MLproject format, python_env.yaml and conda.yaml: the source of truth.

The models validate the *shape and values* of the files and make their JSON Schemas;
`runner.spec.validate` finds the files, warns about unknown keys and turns validation errors into
messages that name the file, the line and the key. A file that passes is used as the frozen
dataclasses of `runner.spec.types`, made from the model's dump.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runner.spec.types import (
    TYPE_ALIASES,
    ParamType,
    check_pattern,
    check_relative,
    check_value,
    data_path_problem,
    placeholders,
    yaml_scalar_text,
)

__all__ = ["TYPE_ALIASES", "CondaEnvFile", "DockerEnv", "EntryPoint", "MLProject",
           "MetricsSpec", "ParamType", "ParameterSpec", "Pipeline", "PipelineStep",
           "PythonEnvFile", "check_value", "placeholders", "yaml_scalar_text"]


def _normalise_type(value: Any) -> Any:
    if isinstance(value, str):
        return TYPE_ALIASES.get(value, value)
    return value


def _param_short_form(value: Any) -> Any:
    """``alpha: float`` is short for ``alpha: {type: float}``."""
    if isinstance(value, str):
        return {"type": value}
    if value is None:
        return {}
    return value


class ParameterSpec(BaseModel):
    """One declared parameter of an entry point."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    type: Annotated[ParamType, BeforeValidator(_normalise_type)] = Field(
        default=ParamType.STRING, description="string, float, path, uri, int, bool or choice"
    )
    default: Annotated[str | None, BeforeValidator(yaml_scalar_text)] = Field(
        default=None, description="The default; a parameter without one (or with null) is required"
    )
    description: str | None = None
    choices: list[Annotated[str, BeforeValidator(yaml_scalar_text)]] | None = Field(
        default=None, description="The allowed values of a parameter of type choice"
    )

    @model_validator(mode="after")
    def _check(self) -> ParameterSpec:
        if self.type is ParamType.CHOICE and not self.choices:
            raise ValueError("a parameter of type choice needs a non-empty 'choices' list")
        if self.type is not ParamType.CHOICE and self.choices is not None:
            raise ValueError(f"'choices' only applies to type choice, not {self.type.value}")
        if self.default is not None and self.type is not ParamType.PATH:
            reason = check_value(self.type, self.default, self.choices)
            if reason is not None:
                raise ValueError(f"default {reason}")
        return self


ParameterDecl = Annotated[
    ParameterSpec, BeforeValidator(_param_short_form, json_schema_input_type=str | ParameterSpec)
]


ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                                 description="Letters, digits, '.', '_', '-'; no '..'")]
MetricName = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[^\s]+$")]


class MetricsSpec(BaseModel):
    """How an entry point reports metrics without a library (a reprun key; MLflow ignores it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stdout: bool | dict[MetricName, str] = Field(
        default=False,
        description="true: read 'name: value' lines of the output; or a regular expression per "
                    "metric whose one group (or group 'value', optional group 'step') is the value",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Metrics files (JSON or YAML) relative to REPRUN_OUTPUT_DIR, read when the run "
                    "ends, besides metrics.json and metrics.yaml",
    )
    better: dict[MetricName, Literal["min", "max"]] = Field(
        default_factory=dict,
        description="Which value of a metric is best when runs are compared (min or max)",
    )

    @field_validator("stdout", mode="before")
    @classmethod
    def _bool_or_mapping(cls, value: Any) -> Any:
        if not isinstance(value, bool | dict):
            raise ValueError("must be true, false or a mapping of metric name to regular "
                             "expression")
        return value

    @field_validator("stdout")
    @classmethod
    def _check_patterns(cls, value: bool | dict[str, str]) -> bool | dict[str, str]:
        if isinstance(value, dict):
            for name, pattern in value.items():
                reason = check_pattern(pattern)
                if reason is not None:
                    raise ValueError(f"the pattern of '{name}' ('{pattern}') {reason}")
        return value

    @field_validator("files")
    @classmethod
    def _check_files(cls, value: list[str]) -> list[str]:
        for item in value:
            reason = check_relative(item)
            if reason is not None:
                raise ValueError(f"'{item}' {reason}")
        return value


class EntryPoint(BaseModel):
    """A named command with its declared parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, ParameterDecl] = Field(default_factory=dict)
    command: str = Field(description="Run with bash -c; {name} is replaced by the quoted value")
    metrics: MetricsSpec | None = None
    models: dict[ModelName, str] = Field(
        default_factory=dict,
        description="Models a finished run registers (a reprun key): model name -> a file or "
                    "folder relative to REPRUN_OUTPUT_DIR ('.' for all of it)",
    )

    @field_validator("models")
    @classmethod
    def _check_model_paths(cls, models: dict[str, str]) -> dict[str, str]:
        for name, path in models.items():
            if ".." in name:
                raise ValueError(f"model name '{name}' contains '..'; use letters, digits, "
                                 "'.', '_' and '-'")
            parts = path.replace("\\", "/").split("/")
            if not path.strip() or path.startswith("/") or ".." in parts:
                raise ValueError(f"models.{name}: '{path}' must be a path inside "
                                 "REPRUN_OUTPUT_DIR, e.g. model (no '..', not absolute)")
        return models

    @field_validator("command")
    @classmethod
    def _check_placeholders(cls, command: str, info: ValidationInfo) -> str:
        declared = info.data.get("parameters", {})
        try:
            names = placeholders(command)
        except ValueError as exc:
            raise ValueError(
                f"command has unbalanced braces ({exc}); write {{{{ and }}}} for literal braces"
            ) from exc
        undeclared = [n for n in dict.fromkeys(names) if n not in declared]
        if undeclared:
            listed = ", ".join(f"{{{n}}}" for n in undeclared)
            raise ValueError(
                f"uses {listed} but no such parameter is declared; declare it under "
                "'parameters' or write {{ and }} for literal braces"
            )
        return command


EnvItem = Annotated[
    str | tuple[str, Annotated[str, BeforeValidator(yaml_scalar_text)]],
    Field(description="NAME copies the host variable; [NAME, value] sets it"),
]


GpuRequest = Annotated[
    Literal["all"] | Annotated[int, Field(ge=1)],
    Field(description="GPUs to give the container: all, or how many"),
]


class DockerEnv(BaseModel):
    """The ``docker_env`` section: MLflow's keys plus dockerfile, gpus, shm_size and network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(default=None, description="The base image the project runs in")
    dockerfile: str | None = Field(
        default=None,
        description="A Dockerfile of the project (path relative to it) that builds the base image",
    )
    volumes: list[str] = Field(default_factory=list, description="host:container[:mode] mounts")
    environment: list[EnvItem] = Field(default_factory=list)
    gpus: GpuRequest | None = None
    shm_size: str | None = Field(
        default=None, description="Size of /dev/shm, e.g. 2g", pattern=r"^[0-9]+[bkmgBKMG]?$"
    )
    network: str | None = Field(
        default=None, description="Network mode: none, host, bridge or a network name"
    )

    @model_validator(mode="after")
    def _image_or_dockerfile(self) -> DockerEnv:
        image = (self.image or "").strip()
        dockerfile = (self.dockerfile or "").strip()
        if image and dockerfile:
            raise ValueError("give either 'image' or 'dockerfile', not both")
        if not image and not dockerfile:
            raise ValueError("'image' or 'dockerfile' is required (the base image to run in)")
        return self

    @field_validator("volumes")
    @classmethod
    def _volume_syntax(cls, value: list[str]) -> list[str]:
        for item in value:
            parts = item.split(":")
            if len(parts) not in (2, 3) or not all(parts[:2]) or not parts[1].startswith("/"):
                raise ValueError(
                    f"volume '{item}' is not host:container[:mode] with an absolute container path"
                )
        return value


StepName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=100)]


class PipelineStep(BaseModel):
    """One step of a pipeline: a run of an entry point (a reprun key; MLflow ignores it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_point: str = Field(description="The entry point (or .py/.sh script) the step runs")
    parameters: dict[str, Annotated[str, BeforeValidator(yaml_scalar_text)]] = Field(
        default_factory=dict,
        description="Values for the entry point's parameters; {STEP.outputs} is that step's "
                    "output directory, {name} a parameter of the pipeline",
    )
    needs: list[StepName] = Field(
        default_factory=list,
        description="Steps that must finish first, besides those whose outputs it reads",
    )
    backend: str | None = Field(default=None, description="Where the step runs (default: the "
                                                          "pipeline run's backend)")
    backend_config: str | dict[str, Any] | None = Field(
        default=None, description="The step's backend settings: a file, inline JSON or a mapping"
    )


class Pipeline(BaseModel):
    """A graph of steps over the entry points of the project (a reprun key; MLflow ignores it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, ParameterDecl] = Field(default_factory=dict)
    steps: dict[StepName, PipelineStep] = Field(min_length=1)


class MLProject(BaseModel):
    """An MLproject file, as MLflow Projects defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="MLproject")

    name: str | None = None
    entry_points: dict[str, EntryPoint] = Field(default_factory=dict)
    python_env: str | None = Field(default=None, description="Path of a python_env.yaml file")
    conda_env: str | None = Field(default=None, description="Path of a conda.yaml file")
    docker_env: DockerEnv | None = None
    data: list[str] = Field(
        default_factory=list,
        description="Files and directories the project reads, relative to it (data/wine.csv, "
                    "data/images/); each run records their content digests",
    )
    pipelines: dict[StepName, Pipeline] = Field(
        default_factory=dict,
        description="Named graphs of steps ('reprun run URI -e NAME'; a reprun key)",
    )

    @field_validator("data")
    @classmethod
    def _data_inside_project(cls, value: list[str]) -> list[str]:
        for item in value:
            reason = data_path_problem(item)
            if reason is not None:
                raise ValueError(reason)
        return value

    @model_validator(mode="after")
    def _one_environment(self) -> MLProject:
        given = [k for k in ("python_env", "conda_env", "docker_env") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(
                f"more than one environment is given ({', '.join(given)}); keep exactly one"
            )
        return self


class PythonEnvFile(BaseModel):
    """python_env.yaml, in MLflow's format."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="python_env")

    python: str | None = Field(default=None, description='Python version, quoted: "3.11"')
    build_dependencies: list[str] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list)

    @field_validator("python", mode="before")
    @classmethod
    def _python_is_text(cls, value: Any) -> Any:
        if isinstance(value, float | int) and not isinstance(value, bool):
            raise ValueError(
                f'the version must be quoted: write python: "{value}" (YAML reads {value} as a '
                "number, so 3.10 would become 3.1)"
            )
        return value


class PipSection(BaseModel):
    """The ``- pip: [...]`` item of a conda.yaml dependency list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pip: list[Annotated[str, BeforeValidator(yaml_scalar_text)]] = Field(
        description="Requirements installed with pip into the conda environment"
    )


CondaDependency = Annotated[
    Annotated[str, BeforeValidator(yaml_scalar_text)] | PipSection,
    Field(description="A conda match spec (numpy >=1.26, python=3.11) or {pip: [...]}"),
]


class CondaEnvFile(BaseModel):
    """conda.yaml (conda's environment.yml format), as MLflow projects use it."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="conda_env")

    name: str | None = Field(default=None, description="Ignored: environments are keyed by content")
    channels: list[str] = Field(
        default_factory=list, description="Channel names or URLs, by priority (default conda-forge)"
    )
    dependencies: list[CondaDependency] = Field(default_factory=list)
    variables: dict[str, Annotated[str, BeforeValidator(yaml_scalar_text)]] = Field(
        default_factory=dict, description="Environment variables set when the environment is used"
    )

    @field_validator("channels", "dependencies")
    @classmethod
    def _no_empty(cls, value: list[Any]) -> list[Any]:
        for item in value:
            if isinstance(item, str) and not item.strip():
                raise ValueError("an empty entry is not allowed")
        return value

    @model_validator(mode="after")
    def _one_pip_section(self) -> CondaEnvFile:
        if sum(isinstance(d, PipSection) for d in self.dependencies) > 1:
            raise ValueError("'dependencies' has more than one 'pip:' list; merge them into one")
        return self


KNOWN_KEYS: dict[str, frozenset[str]] = {
    "project": frozenset(MLProject.model_fields),
    "entry_point": frozenset(EntryPoint.model_fields),
    "metrics": frozenset(MetricsSpec.model_fields),
    "parameter": frozenset(ParameterSpec.model_fields),
    "docker_env": frozenset(DockerEnv.model_fields),
    "pipeline": frozenset(Pipeline.model_fields),
    "step": frozenset(PipelineStep.model_fields),
    "python_env_file": frozenset(PythonEnvFile.model_fields),
    "conda_env_file": frozenset(CondaEnvFile.model_fields),
}
