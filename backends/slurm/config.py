"""The Slurm backend configuration (``--backend-config``): a pydantic model and its loader.

The configuration is a JSON or YAML file, or inline JSON. Each key becomes one ``sbatch`` option
(``partition`` -> ``--partition=...``); ``extra_args`` passes more options, each a single
``--option`` or ``--option=value`` item (never a shell string, never ``--wrap``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backends.configerrors import config_problems
from runner.errors import Problem, SpecError, UsageError
from runner.spec.yamlfile import YamlDoc, load_yaml

CHECK = "reprun schema slurm-config"
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,+-]*$")
TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}"
                  r"|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$")
MEMORY = re.compile(r"^\d+[KMGT]?$")
GPUS = re.compile(r"^([A-Za-z0-9_.-]+:)?\d+$")
NODES = re.compile(r"^\d+(-\d+)?$")
CONSTRAINT = re.compile(r"^[A-Za-z0-9_.,&|*\[\]():!=-]+$")
NODE_LIST = re.compile(r"^[A-Za-z0-9_.,\[\]-]+$")
OPTION = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=\[\]-]*)?$")
SHELL = re.compile(r"[\s;&|`$<>()'\"\\*?!{}~#]")
# Options reprun sets itself (or that would replace the job's script or its output).
MANAGED = frozenset({
    "--wrap", "--output", "--error", "--input", "--chdir", "--parsable", "--export",
    "--export-file", "--open-mode", "--job-name", "--array", "--wait", "--test-only", "--help",
    "--usage", "--version",
})


class SlurmConfig(BaseModel):
    """``--backend-config`` of ``--backend slurm``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="reprun slurm backend")

    partition: str | None = Field(default=None, description="--partition; default: the "
                                  "cluster's default partition")
    account: str | None = Field(default=None, description="--account")
    qos: str | None = Field(default=None, description="--qos")
    time: str | None = Field(default=None, description="--time: minutes, MM:SS, HH:MM:SS, "
                             "D-HH, D-HH:MM or D-HH:MM:SS")
    cpus_per_task: int | None = Field(default=None, ge=1, description="--cpus-per-task")
    mem: str | None = Field(default=None, description="--mem per node, e.g. 500M or 4G")
    gpus: str | None = Field(default=None, description="--gres=gpu:N (or TYPE:N)")
    nodes: str | None = Field(default=None, description="--nodes: N or MIN-MAX")
    constraint: str | None = Field(default=None, description="--constraint (node features)")
    exclude: str | None = Field(default=None, description="--exclude: nodes not to use")
    extra_args: list[str] = Field(
        default_factory=list,
        description="More sbatch options, each one item '--option' or '--option=value'")
    workdir: str | None = Field(
        default=None, description="A directory reprun and the nodes both see (a shared file "
        "system): the staged code, job logs and outputs, and the environments; default: "
        "REPRUN_HOME/slurm")
    env_manager: str | None = Field(
        default=None, description="The environment manager when --env-manager is not given")
    start_timeout_seconds: float = Field(
        default=600.0, ge=0, description="Cancel a job still PENDING this long after submission")
    poll_seconds: float = Field(default=1.0, gt=0, le=60,
                                description="How often squeue is asked about the job")

    @field_validator("time", "mem", "gpus", "nodes", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("partition", "account", "qos")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _match(value, NAME, "a Slurm name (letters, digits, '_', '.', ',', '+', '-')")

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return _match(value, TIME, "a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH:MM:SS...)")

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        return _match(value, MEMORY, "a memory size (examples: 500M, 4G; a number is MB)")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: str | None) -> str | None:
        return _match(value, GPUS, "a GPU count (2) or TYPE:COUNT (a100:2)")

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: str | None) -> str | None:
        return _match(value, NODES, "a node count (2) or MIN-MAX (1-4)")

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, value: str | None) -> str | None:
        return _match(value, CONSTRAINT, "a Slurm feature expression (e.g. 'gpu&fast')")

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: str | None) -> str | None:
        return _match(value, NODE_LIST, "a Slurm node list (e.g. 'node[1-3],node7')")

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value or "%" in value):
            raise ValueError(f"'{value}' is not a usable directory (no '%' or line breaks)")
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: list[str]) -> list[str]:
        for item in value:
            check_option(item)
        return value

    def recordable(self) -> dict[str, Any]:
        """The config as given, for the record."""
        return self.model_dump(mode="json", exclude_unset=True)


def _match(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"'{value}' is not {what}")
    return value


def check_option(item: str) -> None:
    """Refuse an ``extra_args`` item that is not one plain ``--option[=value]``."""
    name = item.partition("=")[0]
    if name in MANAGED:
        raise ValueError(f"'{item}': {name} is set by reprun and cannot be given")
    if SHELL.search(item):
        raise ValueError(f"'{item}' contains a space or a shell character; give each option "
                         "as one item '--option=value'")
    if not OPTION.match(item):
        raise ValueError(f"'{item}' is not an sbatch option of the form --option or "
                         "--option=value")


def load_config(value: str | None, cwd: Path) -> SlurmConfig:
    """Read ``--backend-config``: inline JSON (starts with '{'), or a JSON/YAML file (a run
    reads it through `backends.slurm.settings`, which keeps what was validated)."""
    if value is None or not value.strip():
        return SlurmConfig()
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--backend-config is not valid JSON: {exc.msg} at column "
                             f"{exc.colno}", hint="quote the JSON for your shell, or give a "
                             "file") from exc
        if not isinstance(data, dict):
            raise UsageError("--backend-config must be a JSON object")
        return _validate(data, None)
    path = (cwd / value).resolve()
    if not path.is_file():
        raise UsageError(f"--backend-config '{value}' is neither inline JSON nor an existing file",
                         hint="give a JSON/YAML file or a JSON object such as "
                              "'{\"partition\": \"debug\"}'")
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise SpecError([Problem(path, "", "the backend config must be a mapping of keys")])
    config = _validate(doc.data, doc)
    if config.workdir is not None and not Path(config.workdir).expanduser().is_absolute():
        config = config.model_copy(update={"workdir": str(path.parent / config.workdir)})
    return config


def _validate(data: dict[str, Any], doc: YamlDoc | None) -> SlurmConfig:
    try:
        return SlurmConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError(config_problems(exc, doc, "slurm-config"), check=CHECK) from None
