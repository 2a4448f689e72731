"""What a container run needs, decided at plan time without talking to a Docker engine.

`ContainerSpec` is frozen data: the base image (a reference or a Dockerfile of the project), the
mounts (``docker_env.volumes``, path parameters, the outputs folder), the variables to pass (names
copied from the host, pairs set), GPUs, shared memory, network, and whether to keep the container.
It is built by `container_spec` from the project and the host environment; a variable that the
project copies from the host but the host lacks is an error naming every missing one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from runner.errors import UsageError
from runner.frozen import frozen
from runner.spec.project import Project
from runner.spec.types import EntryPoint, ParamType

WORKSPACE = "/workspace"
OUTPUT_TARGET = "/reprun/outputs"
STREAM_TARGET = "/reprun/stream"  # the directory of the REPRUN_METRICS file (runner.tracking)
REPO_PREFIX = "reprun"
# Run the command with bash when the image has it (as a local run does), else with sh.
SHELL_WRAPPER = (
    'if command -v bash >/dev/null 2>&1; then exec bash -c "$0"; fi; exec /bin/sh -c "$0"'
)
_NOT_NAME = re.compile(r"[^a-z0-9]+")


def sanitise_name(name: str) -> str:
    """A valid image repository name from any project name: ``cuML RF test`` -> ``cuml-rf-test``."""
    cleaned = _NOT_NAME.sub("-", name.lower()).strip("-")
    return cleaned[:100].strip("-") or "project"


def default_base_image(project: Project) -> str:
    """``python:<version>-slim`` for the project's Python (python_env), else this interpreter's."""
    wanted = project.env.python_env.python if project.env.python_env else None
    if wanted:
        version = ".".join(wanted.split(".")[:2])
    else:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"python:{version}-slim"


@frozen
class Mount:
    """A bind mount (``source`` is an absolute host path) or a named volume."""

    source: str
    target: str
    read_only: bool = False
    kind: Literal["bind", "volume"] = "bind"

    def render(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


@frozen
class ContainerSpec:
    """How to build the image and start the container of one run."""

    name: str
    workdir: str
    base_image: str | None = None
    dockerfile: str | None = None
    copy_env: tuple[str, ...] = ()
    set_env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    gpus: str | None = None
    shm_size: str | None = None
    network: str | None = None
    keep: bool = False
    default_base: bool = False  # base_image is the default (neither docker_env nor asked for)
    replaces: str | None = None  # the docker_env.image that --docker-base-image replaced

    @property
    def repository(self) -> str:
        return f"{REPO_PREFIX}/{self.name}"

    @property
    def base_label(self) -> str:
        return self.base_image or f"Dockerfile {self.dockerfile}"

    def argv(self, command: str) -> list[str]:
        """The container's command: the entry point's command string, run by a shell."""
        return ["/bin/sh", "-c", SHELL_WRAPPER, command]

    def env_names(self) -> list[str]:
        """Names (never values) of every variable the container gets."""
        names = ["REPRUN_RUN_ID", "REPRUN_OUTPUT_DIR", "REPRUN_METRICS", "PYTHONUNBUFFERED"]
        names += [*self.copy_env, *(name for name, _value in self.set_env)]
        return list(dict.fromkeys(names))

    def container_env(self, run_id: str, host_env: Mapping[str, str],
                      metrics_file: str | None = None) -> dict[str, str]:
        """The container's variables: copied host ones, set pairs, then reprun's own."""
        env = {name: host_env[name] for name in self.copy_env if name in host_env}
        env.update(self.set_env)
        env.update({"REPRUN_RUN_ID": run_id, "REPRUN_OUTPUT_DIR": OUTPUT_TARGET,
                    "PYTHONUNBUFFERED": "1"})
        if metrics_file is not None:
            env["REPRUN_METRICS"] = f"{STREAM_TARGET}/{metrics_file}"
        return env

    def describe(self) -> dict[str, Any]:
        mounts = [*(m.render() for m in self.mounts), f"<run outputs>:{OUTPUT_TARGET}:rw",
                  f"<run metrics stream>:{STREAM_TARGET}:rw"]
        return {
            "base_image": self.base_image, "dockerfile": self.dockerfile,
            "image": f"{self.repository}:<content hash>", "workdir": self.workdir,
            "mounts": mounts, "environment": self.env_names(),
            "gpus": self.gpus, "shm_size": self.shm_size, "network": self.network or "default",
            "keep_container": self.keep,
        }


def container_spec(
    project: Project, entry: EntryPoint, values: Mapping[str, str], host_env: Mapping[str, str],
    base_image: str | None, keep: bool, check_host_vars: bool = True,
    replace_env_image: bool = False,
) -> ContainerSpec:
    """The container settings of a run; raises UsageError listing every missing host variable
    (unless ``check_host_vars`` is False: a backend that maps them itself checks them).
    ``replace_env_image``: ``base_image`` (given on the command line) replaces docker_env.image."""
    name = sanitise_name(project.name)
    docker = project.env.docker
    mounts: list[Mount] = []
    copy_env: list[str] = []
    set_env: list[tuple[str, str]] = []
    if docker is not None:
        mounts += [_volume(v, project.directory) for v in docker.volumes]
        for item in docker.environment:
            if isinstance(item, str):
                copy_env.append(item)
            else:
                set_env.append((item[0], item[1]))
        if check_host_vars:
            _check_host_vars(copy_env, host_env, project)
    mounts += _path_mounts(entry, values)
    base = None if docker is not None else (base_image or default_base_image(project))
    replaces = None
    if docker is not None:
        base = docker.image
        if replace_env_image and base_image is not None:
            base, replaces = _replaced(project, base_image)
    gpus = str(docker.gpus) if docker is not None and docker.gpus is not None else None
    return ContainerSpec(
        name=name, workdir=f"{WORKSPACE}/{name}", base_image=base,
        dockerfile=docker.dockerfile if docker is not None else None,
        copy_env=tuple(copy_env), set_env=tuple(set_env), mounts=tuple(mounts), gpus=gpus,
        shm_size=docker.shm_size if docker is not None else None,
        network=docker.network if docker is not None else None, keep=keep,
        default_base=docker is None and base_image is None, replaces=replaces,
    )


def _replaced(project: Project, base_image: str) -> tuple[str, str]:
    """``base_image`` in place of docker_env.image, and the image it replaces."""
    docker = project.env.docker
    if docker is None or docker.image is None:
        where = project.spec_file.name if project.spec_file else "MLproject"
        raise UsageError(f"--docker-base-image {base_image}: {where} builds its image from "
                         "docker_env.dockerfile, which has no base image to replace",
                         hint="change the FROM line of the Dockerfile, or drop the option")
    return base_image, docker.image


def _check_host_vars(names: list[str], host_env: Mapping[str, str], project: Project) -> None:
    missing = [n for n in names if n not in host_env]
    if missing:
        listed = ", ".join(missing)
        where = project.spec_file.name if project.spec_file else "MLproject"
        raise UsageError(
            f"{where}: docker_env.environment copies {listed} from the host, but "
            f"{'it is' if len(missing) == 1 else 'they are'} not set",
            hint=f"set {'it' if len(missing) == 1 else 'them'} (export NAME=value) or give a "
                 "[NAME, value] pair instead",
        )


def _volume(spec: str, project_dir: Path) -> Mount:
    """``host:container[:mode]``; a relative host path is taken against the project directory."""
    source, target, *rest = spec.split(":")
    read_only = bool(rest) and "ro" in rest[0].split(",")
    if source.startswith(("/", ".", "~")):
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = project_dir / path
        return Mount(str(path.resolve()), target, read_only)
    return Mount(source, target, read_only, kind="volume")


def _path_mounts(entry: EntryPoint, values: Mapping[str, str]) -> list[Mount]:
    """Each ``path`` parameter is mounted read-only at the same absolute path."""
    mounts = []
    for name, decl in entry.parameters.items():
        if decl.type is ParamType.PATH and name in values:
            mounts.append(Mount(values[name], values[name], read_only=True))
    return mounts
