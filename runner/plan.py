"""From a command line to a plan: source, spec, parameters, environment and backend choices.

Planning has no side effects beyond reading files (and git); ``--dry-run`` prints the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends import BACKENDS
from runner.envs import BUILDERS, get_builder
from runner.errors import NotSupportedError, UsageError
from runner.params import ResolvedParams, resolve
from runner.source import Checkout, release, resolve_source
from runner.spec import Project, load_project
from runner.spec_models import EntryPoint


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for."""

    uri: str
    cwd: Path
    base_env: Mapping[str, str]
    entry_point: str = "main"
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    env_manager: str | None = None
    backend: str = "local"
    strict: bool = False
    grace_period: float = 10.0
    echo: bool = True
    backend_config: str | None = None
    detach: bool = False


@dataclass(frozen=True)
class Plan:
    """A run that is ready to start: nothing left to decide."""

    options: RunOptions
    checkout: Checkout
    project: Project
    entry: EntryPoint
    params: ResolvedParams
    manager: str
    backend: str

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (for --dry-run)."""
        return {
            "project": {"uri": self.checkout.uri, "path": str(self.project.directory),
                        "name": self.project.name,
                        "spec_file": _str(self.project.spec_file)},
            "entry_point": self.options.entry_point,
            "parameters": dict(self.params.values),
            "command": self.params.command,
            "environment": {"kind": self.project.env.kind, "manager": self.manager,
                            "file": _str(self.project.env.file)},
            "backend": self.backend,
            "backend_config": self.options.backend_config,
            "source": self.checkout.facts.model_dump(mode="json"),
            "warnings": [w.render() for w in self.project.warnings],
        }


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def make_plan(options: RunOptions) -> Plan:
    """Resolve everything a run needs, or raise the first user error."""
    checkout = resolve_source(options.uri, options.cwd, options.base_env, options.version)
    try:
        project = load_project(checkout.directory, strict=options.strict)
        entry = project.entry_point(options.entry_point)
        backend = _choose_backend(options.backend, project, options)
        manager = choose_manager(options.env_manager, project)
        params = resolve(entry, options.params, options.cwd)
    except BaseException:
        release(checkout, options.base_env)
        raise
    return Plan(options, checkout, project, entry, params, manager, backend)


def release_plan(plan: Plan) -> None:
    """Remove what planning made for this run alone (a clean checkout of a git revision)."""
    release(plan.checkout, plan.options.base_env)


def choose_manager(requested: str | None, project: Project) -> str:
    """The environment manager: the one asked for, else the default for the project's kind."""
    manager = requested or "local"
    if manager not in BUILDERS:
        get_builder(manager)  # raises the right "not supported" error
    return manager


def _choose_backend(name: str, project: Project, options: RunOptions) -> str:
    if name not in BACKENDS:
        from backends import get_backend

        get_backend(name)  # raises the right "not supported" error
    if name == "local" and (options.detach or options.backend_config):
        given = "--detach" if options.detach else "--backend-config"
        raise UsageError(f"{given} applies to remote backends, not to --backend local",
                         hint="add --backend kubernetes, or leave it out")
    if project.env.kind == "docker_env" and name == "local":
        raise NotSupportedError(
            f"project '{project.name}' declares docker_env, which needs the docker backend; "
            "running in Docker is not yet supported",
            hint="remove docker_env to run it with the local interpreter",
        )
    return name
