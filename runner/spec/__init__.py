"""What the project asks for: the MLproject and environment files, validated, and its parameters.

- `models`: pydantic models of the files, the source of truth and of ``schemas/`` (imported only
  to validate a file that is not in the validated-file cache).
- `types`: the same project as frozen dataclasses, what the rest of reprun uses.
- `validate`, `yamlfile`: the slow path that reads YAML with line numbers and validates.
- `project`: find and load a project (through the validated-file cache), pick its environment.
- `params`: ``-P name=value`` -> typed values -> the exact command, quoted as MLflow does.
"""

from runner.spec.params import ResolvedParams, parse_param_args, resolve
from runner.spec.project import EnvRequest, Project, load_project
from runner.spec.types import DockerEnv, EntryPoint, ParamType

__all__ = [
    "DockerEnv", "EntryPoint", "EnvRequest", "ParamType", "Project", "ResolvedParams",
    "load_project", "parse_param_args", "resolve",
]
