"""From a command line to a plan: source, spec, parameters, environment and backend choices.

Planning has no side effects beyond reading files (and git); ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import BACKENDS, BUILDS_OWN_ENVIRONMENT, check_backend, fixed_image
from runner.envs import BUILDERS, get_builder
from runner.envs.base import Lock, PythonFacts, ResolvedEnv
from runner.envs.cache import cache_root
from runner.errors import NotSupportedError, UsageError
from runner.frozen import frozen
from runner.source.checkout import Checkout, release, resolve_source
from runner.spec.params import ResolvedParams, resolve
from runner.spec.project import SPEC_CACHE, Project, load_project
from runner.spec.types import Conversion, EntryPoint

if TYPE_CHECKING:
    from backends.base import ArraySlot
    from backends.docker.container import ContainerSpec
    from runner.envs.python import Compiling
    from runner.record.types import InputInfo
    from runner.tracking.mlflow import TrackingOptions

# What --env-manager local (or no choice) means when the backend builds the environment itself:
# use the image as it is.
IMAGE_MANAGER = "docker"


@frozen
class RunOptions:
    """What the user asked for."""

    uri: str
    cwd: Path
    base_env: Mapping[str, str]
    entry_point: str = "main"
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    env_manager: str | None = None
    backend: str | None = None
    strict: bool = False
    grace_period: float = 10.0
    echo: bool = True
    refresh: bool = False  # resolve the environment again instead of reusing the cached lock
    progress_live: bool = False  # environment progress may redraw (stderr is a terminal)
    docker_base_image: str | None = None
    replace_env_image: bool = False  # docker_base_image replaces docker_env.image (typed as option)
    keep_container: bool = False
    conda_channels: tuple[str, ...] = ()  # replace conda.yaml's channels (mirrors, air-gapped)
    backend_config: str | None = None
    detach: bool = False
    resolve_early: bool = False  # start resolving python_env while validating (a real run)
    tracking: TrackingOptions | None = None  # an MLflow tracking server or store, if named
    allow_drift: bool = False  # install a conda project from PyPI without its conda-only packages
    reuse: bool = False  # take the outputs of a FINISHED run with the same reuse key
    sweep_id: str | None = None  # the run is trial ``trial`` of this sweep (runner.sweep)
    trial: int | None = None
    array: ArraySlot | None = None  # the sweep's trials are submitted together (job array)
    parent: str | None = None  # the run this run is part of (a pipeline run, a calling run)


@frozen
class Replay:
    """What a reproduction takes from the record of run ``run_id`` besides source and command.

    ``lock`` is the recorded lock to build from (None: resolve anew and compare with the
    ``recorded`` interpreter and packages); ``source`` is 'git' or 'snapshot'.
    """

    run_id: str
    lock: Lock | None
    allow_drift: bool
    source: str
    recorded: PythonFacts = field(default_factory=PythonFacts)
    missing_paths: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[InputInfo, ...] = ()  # the recorded inputs, checked before the command runs
    record_dir: Path | None = None  # where the record's input manifests are


@frozen
class Plan:
    """A run that is ready to start: nothing left to decide."""

    options: RunOptions
    checkout: Checkout
    project: Project
    entry: EntryPoint
    params: ResolvedParams
    manager: str
    backend: str
    container: ContainerSpec | None = None
    replay: Replay | None = None
    resolving: Compiling | None = None  # see runner.envs.early
    lock: Lock | None = None  # resolved once for many runs of the plan (a sweep's trials)
    environment: ResolvedEnv | None = None  # built once for them, when reprun builds it
    workdir: Path | None = None  # where the command runs, if not the project directory (a copy)

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (for --dry-run)."""
        described = {
            "project": {"uri": self.checkout.uri, "path": str(self.project.directory),
                        "name": self.project.name,
                        "spec_file": _str(self.project.spec_file)},
            "entry_point": self.options.entry_point,
            "parameters": dict(self.params.values),
            "command": self.params.command,
            "environment": {"kind": self.project.env.kind, "manager": self.manager,
                            "file": _str(self.project.env.file),
                            **_describe_conversion(self.project.env.conversion)},
            "backend": self.backend,
            "backend_config": self.options.backend_config,
            "source": self.checkout.facts.model_dump(mode="json"),
            "warnings": [w.render() for w in self.project.warnings],
        }
        if self.container is not None and self.backend == "docker":
            described["docker"] = _describe_container(self.container, self.params.command)
        return described


def _describe_conversion(conversion: Conversion | None) -> dict[str, Any]:
    if conversion is None:
        return {}
    return {"converted_from": "conda", "python": conversion.python,
            "requirements": list(conversion.requirements),
            "conversion": [{"conda": e.conda, "pypi": e.pypi, "note": e.note}
                           for e in conversion.entries]}


def _describe_container(spec: ContainerSpec, command: str) -> dict[str, Any]:
    from backends.docker.image import render_dockerfile

    base = spec.base_image or f"{spec.repository}-base:<hash> (built from {spec.dockerfile})"
    return {**spec.describe(), "command": spec.argv(command),
            "dockerfile_text": render_dockerfile(spec, base, None)}


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


@frozen
class Opened:
    """A project's source checked out and its MLproject loaded: what a run, or a pipeline of
    runs, starts from."""

    checkout: Checkout
    project: Project
    resolving: Compiling | None = None


def open_project(options: RunOptions) -> Opened:
    """The source of ``options.uri`` and its validated project; the first user error raised."""
    checkout = resolve_source(options.uri, options.cwd, options.base_env, options.version)
    spec_cache = cache_root(options.base_env) / SPEC_CACHE
    resolving = _resolve_early(options, checkout.directory, spec_cache)
    try:
        project = load_project(checkout.directory, strict=options.strict, cache_dir=spec_cache)
    except BaseException:
        if resolving is not None:
            resolving.cancel()
        release(checkout, options.base_env)
        raise
    return Opened(checkout, project, resolving)


def make_plan(options: RunOptions, opened: Opened | None = None, shared: bool = False) -> Plan:
    """Resolve everything a run needs, or raise the first user error. ``opened`` is the project
    if it is open already; ``shared`` (a pipeline's step): its checkout is not released on error.
    """
    opened = opened or open_project(options)
    checkout, project, resolving = opened.checkout, opened.project, opened.resolving
    try:
        entry = project.entry_point(options.entry_point)
        backend = choose_backend(options.backend, project, options.detach,
                                 options.backend_config)
        image = fixed_image(backend, options.backend_config, options.cwd)
        configured = check_backend(backend, options.backend_config, options.cwd,
                                   options.base_env)
        manager = choose_manager(options.env_manager or configured, project, backend,
                                 image is not None)
        project = converted(project, manager, options.allow_drift)
        params = resolve(entry, options.params, options.cwd, options.strict)
        container = None
        if backend in BUILDS_OWN_ENVIRONMENT:
            from backends.docker.container import container_spec

            # kubernetes maps docker_env.environment itself (names may come from Secrets).
            container = container_spec(project, entry, params.values, options.base_env,
                                       options.docker_base_image, options.keep_container,
                                       check_host_vars=backend == "docker",
                                       replace_env_image=options.replace_env_image)
    except BaseException:
        if resolving is not None:
            resolving.cancel()
        if not shared:
            release(checkout, options.base_env)
        raise
    return Plan(options, checkout, project, entry, params, manager, backend, container,
                resolving=resolving)


def with_params(plan: Plan, params: Mapping[str, str], sweep_id: str | None = None,
                trial: int | None = None) -> Plan:
    """``plan`` with other parameter values (a trial of a sweep): the same checkout, project,
    environment and backend; the values validated and the command formed as for a new plan."""
    tracking = plan.options.tracking
    if tracking is not None and sweep_id is not None and tracking.run_name is None:
        # the trial's MLflow run is named after it, not by the server at random
        tracking = dataclasses.replace(tracking, run_name=f"{sweep_id}-trial-{trial}")
    options = dataclasses.replace(plan.options, params=dict(params), sweep_id=sweep_id,
                                  trial=trial, tracking=tracking)
    resolved = resolve(plan.entry, options.params, options.cwd, options.strict)
    container = plan.container
    if container is not None:
        from backends.docker.container import container_spec

        container = container_spec(plan.project, plan.entry, resolved.values, options.base_env,
                                   options.docker_base_image, options.keep_container,
                                   check_host_vars=plan.backend == "docker",
                                   replace_env_image=options.replace_env_image)
    return dataclasses.replace(plan, options=options, params=resolved, container=container,
                               resolving=None)


def _resolve_early(options: RunOptions, directory: Path, spec_cache: Path) -> Compiling | None:
    if not options.resolve_early:
        return None
    from runner.envs.early import resolve_early

    return resolve_early(directory, options.env_manager, options.base_env, spec_cache,
                         options.refresh)


def converted(project: Project, manager: str, allow_drift: bool = False) -> Project:
    """A conda project for uv or virtualenv: its conda.yaml installed from PyPI, or refused.

    With ``allow_drift`` the packages only conda has are dropped (the conversion says so).
    """
    env = project.env
    if env.kind != "conda_env" or env.conda_env is None or manager not in CONVERTING_MANAGERS:
        return project
    from runner.envs.conda import converted_request

    request = converted_request(env, project.directory, manager, allow_drift)
    return dataclasses.replace(project, env=request)


def release_plan(plan: Plan) -> None:
    """Remove what planning made for this run alone (a clean checkout of a git revision) and
    stop an early resolution that was not used."""
    if plan.resolving is not None:
        plan.resolving.cancel()
    release(plan.checkout, plan.options.base_env)


# The manager used when --env-manager is not given, by the kind of environment the project asks for.
# A project without an environment file gets, like in MLflow, a fresh environment with no
# dependencies for the interpreter running reprun (built by uv in a fraction of a second).
DEFAULT_MANAGERS = {"python_env": "uv", "none": "uv", "conda_env": "conda", "docker_env": "local"}
# Managers that can build a conda project's python/pip part as a Python environment (as MLflow).
CONVERTING_MANAGERS = ("uv", "virtualenv")


def choose_manager(requested: str | None, project: Project, backend: str = "local",
                   existing_image: bool = False) -> str:
    """The environment manager: the one asked for, else the default for the project's kind.

    With a backend that runs images, the image is the environment unless a Python lock is to be
    installed into it; an existing image given in the backend config is used as it is.
    """
    manager = requested or DEFAULT_MANAGERS.get(project.env.kind, "local")
    if manager not in BUILDERS:
        get_builder(manager)  # raises the right "not supported" error
    if backend in BUILDS_OWN_ENVIRONMENT:
        no_env = project.env.kind == "none" and requested is None
        as_is = manager in ("local", IMAGE_MANAGER) or project.env.kind == "docker_env"
        if as_is or no_env or existing_image:
            return IMAGE_MANAGER
        from backends.docker.image import IMAGE_LOCKS

        if manager not in IMAGE_LOCKS:
            raise NotSupportedError(
                f"--env-manager {manager} cannot yet install its lock into a Docker image",
                hint="use --env-manager local to run in the base image as it is",
            )
    elif manager == IMAGE_MANAGER:
        raise NotSupportedError(
            "--env-manager docker runs the project in an image", hint="add --backend docker"
        )
    return manager


def choose_backend(name: str | None, project: Project, detach: bool = False,
                   backend_config: str | None = None) -> str:
    """The backend asked for; by default docker for docker_env projects (as MLflow), else local."""
    if name is None:
        name = "docker" if project.env.kind == "docker_env" else "local"
    if name not in BACKENDS:
        from backends import get_backend

        get_backend(name)  # raises the right "not supported" error
    if name == "local" and (detach or backend_config):
        given = "--detach" if detach else "--backend-config"
        raise UsageError(f"{given} applies to remote backends, not to --backend local",
                         hint="add --backend kubernetes or slurm, or leave it out")
    if project.env.kind == "docker_env" and name == "slurm":
        raise NotSupportedError(
            f"project '{project.name}' declares docker_env, which --backend slurm cannot run "
            "yet (it needs Apptainer or Singularity on the cluster)",
            hint="use --backend docker or kubernetes, or a python_env/conda_env")
    if project.env.kind == "docker_env" and name not in BUILDS_OWN_ENVIRONMENT:
        raise NotSupportedError(
            f"project '{project.name}' declares docker_env, which runs in a container, "
            f"not with --backend {name}",
            hint="use --backend docker (the default for docker_env projects)",
        )
    return name
