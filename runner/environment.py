"""A run's environment: the spec its builder gets, the lock, the build (or the recorded lock a
reproduction restores), and what of it goes into the record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends import BUILDS_OWN_ENVIRONMENT, environment_env, image_python
from runner.envs import get_builder
from runner.envs.base import EnvSpec, Lock, PythonFacts, ResolvedEnv, restore
from runner.errors import Drift
from runner.fsutil import atomic_write_text
from runner.plan import Plan
from runner.record.types import (
    CondaInfo,
    ConvertedPackage,
    DriftEntry,
    EnvironmentInfo,
    Package,
    RunRecord,
)

Notify = Callable[[str], None]
PYTHON_MANAGERS = ("uv", "virtualenv")


def env_spec(plan: Plan, notify: Notify) -> EnvSpec:
    options = plan.options
    base_env = environment_env(plan.backend, options.backend_config, options.cwd,
                               options.base_env)
    return EnvSpec(plan.project.env, plan.project.directory, plan.manager, base_env,
                   notify=notify, live=options.progress_live,
                   conda_channels=options.conda_channels, resolving=plan.resolving,
                   target_python=target_python(plan))


def target_python(plan: Plan) -> str | None:
    """The Python of the image a Python lock is installed into (a docker run), else None."""
    container = plan.container
    if plan.manager not in PYTHON_MANAGERS or container is None:
        return None
    return image_python(plan.backend, container.base_image, plan.options.base_env)


def new_lock(plan: Plan, notify: Notify) -> Lock:
    """The lock a new run would use (resolved, or the cached one), before anything is built."""
    if plan.lock is not None:
        return plan.lock
    return get_builder(plan.manager).lock(env_spec(plan, notify), refresh=plan.options.refresh)


def prepare_environment(plan: Plan, notify: Notify) -> Plan:
    """``plan`` with its environment resolved and built, for many runs that share it (a
    sweep's trials): none of them resolves or builds it again. A backend that builds its own
    environment (an image) gets the lock only; it builds the image on the first submission."""
    if plan.replay is not None:
        return plan  # a reproduction builds from its recorded lock
    lock = new_lock(plan, notify)
    if plan.backend in BUILDS_OWN_ENVIRONMENT:
        return dataclasses.replace(plan, lock=lock)
    built = get_builder(plan.manager).ensure(env_spec(plan, notify), lock)
    return dataclasses.replace(plan, lock=lock, environment=built)


def build_environment(
    plan: Plan, notify: Notify, new_lock: Lock | None = None
) -> tuple[ResolvedEnv, tuple[Drift, ...]]:
    options = plan.options
    spec = env_spec(plan, notify)
    builder = get_builder(plan.manager)
    replay = plan.replay
    if plan.environment is not None and replay is None:
        return plan.environment, ()  # built once for every run of the plan (a sweep)
    if plan.backend in BUILDS_OWN_ENVIRONMENT:
        # The backend installs the lock where the command runs (an image); nothing to build here.
        recorded = replay.lock if replay is not None else None
        lock = recorded or new_lock or plan.lock or builder.lock(spec, refresh=options.refresh)
        conda_env = plan.project.env.conda_env
        variables = dict(conda_env.variables) if conda_env and lock.manager == "conda" else {}
        return ResolvedEnv(lock.manager, lock, lock.sha256,
                           _image_python(lock, spec.target_python), variables=variables), ()
    if replay is None:
        lock = new_lock or plan.lock or builder.lock(spec, refresh=options.refresh)
        return builder.ensure(spec, lock), ()
    return restore(builder, spec, replay.lock, replay.allow_drift, replay.recorded)


def _image_python(lock: Lock, version: str | None) -> PythonFacts:
    """The packages an image build installs from a Python lock (exactly its pins), and the
    image's interpreter that runs them (the virtual environment the image build makes)."""
    if lock.manager not in PYTHON_MANAGERS or not lock.content:
        return PythonFacts()
    from runner.envs.python import pinned_packages

    executable = None
    if version:
        from backends.docker.image import ENV_ROOT

        executable = f"{ENV_ROOT}/venv/bin/python"
    return PythonFacts(version, executable, pinned_packages(lock.content))


def with_environment(
    record: RunRecord, plan: Plan, resolved: ResolvedEnv, run_dir: Path,
    drift: tuple[Drift, ...],
) -> RunRecord:
    atomic_write_text(run_dir / resolved.lock.filename, resolved.lock.content)
    python = resolved.python
    environment = EnvironmentInfo(
        kind=plan.project.env.kind,
        manager=resolved.manager,
        python_version=python.version,
        python_executable=python.executable,
        packages=[Package(name=n, version=v) for n, v in python.packages],
        cache_key=resolved.cache_key,
        lock_file=resolved.lock.filename,
        lock_sha256=resolved.lock.sha256,
        conda=_conda_info(resolved),
        **conversion_fields(plan),
    )
    from runner.tracking.reuse import reuse_key

    update: dict[str, object] = {
        "environment": environment,
        "reuse_key": reuse_key(record, resolved.lock.sha256, resolved.lock.manager),
    }
    if record.reproduction is not None and drift:
        entries = [DriftEntry(entry=d.entry, recorded=d.recorded, found=d.found, reason=d.reason)
                   for d in drift]
        update["reproduction"] = record.reproduction.model_copy(update={"drift": entries})
    return record.model_copy(update=update)


def conversion_fields(plan: Plan) -> dict[str, Any]:
    """How a conda_env file was carried over to PyPI, for the record (empty if it was not)."""
    conversion = plan.project.env.conversion
    if conversion is None:
        return {}
    return {"converted_from": "conda",
            "conversion": [ConvertedPackage(conda=e.conda, pypi=e.pypi, note=e.note)
                           for e in conversion.entries]}


def _conda_info(resolved: ResolvedEnv) -> CondaInfo | None:
    conda = resolved.conda
    if conda is None:
        return None
    return CondaInfo(solver=conda.solver, channels=list(conda.channels), platform=conda.platform,
                     virtual_packages=list(conda.virtual_packages), prefix=conda.prefix)
