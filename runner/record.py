"""The run record: what ran, with what, where, and how it ended; the product of reprun.

`run.json` in the run's directory is the source of truth; it is written before the command starts
and replaced atomically at each step.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Status(str, Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def done(self) -> bool:
        return self is not Status.RUNNING


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectInfo(_Model):
    uri: str = Field(description="The project as given, credentials removed")
    path: str = Field(description="The directory the command ran in")
    name: str
    spec_file: str | None = Field(default=None, description="The MLproject file, if any")


class SubmoduleInfo(_Model):
    path: str = Field(description="Relative to the repository root (nested ones include parents)")
    commit: str = Field(description="The full SHA checked out, as the superproject records it")
    url: str | None = Field(default=None, description="Where it was fetched from, no credentials")


class SnapshotInfo(_Model):
    """A tar.gz of a project directory that is no git repository, to reproduce it from."""

    file: str = Field(description="The archive beside the record")
    sha256: str
    files: int = Field(description="How many files it holds")
    size: int = Field(description="Their total size in bytes, uncompressed")
    rules: list[str] = Field(description="The exclude rules applied, gitignore syntax")
    excluded: list[str] = Field(
        default_factory=list,
        description="What was left out (a directory ends with '/'); at most 200 entries",
    )
    excluded_count: int = Field(default=0, description="How many paths were left out in all")


class SourceInfo(_Model):
    uri: str | None = Field(
        default=None,
        description="The repository URL or local directory, credentials and #subdirectory removed",
    )
    requested_version: str | None = Field(
        default=None, description="--version as given (branch, tag, SHA); null for the default"
    )
    resolved_commit: str | None = Field(default=None, description="Full SHA of what ran")
    subdirectory: str | None = Field(
        default=None, description="The project directory relative to the repository root"
    )
    checkout: str | None = Field(
        default=None,
        description="'in-place' (the user's directory) or 'clean' (a fresh checkout of "
                    "resolved_commit made for this run)",
    )
    submodules: list[SubmoduleInfo] = Field(default_factory=list)
    git_commit: str | None = None
    git_branch: str | None = None
    git_remote: str | None = Field(default=None, description="First remote URL, no credentials")
    git_dirty: bool | None = None
    patch_file: str | None = Field(
        default=None, description="Uncommitted changes (staged, unstaged, untracked) as a patch"
    )
    patch_sha256: str | None = None
    snapshot: SnapshotInfo | None = Field(
        default=None,
        description="For a project outside git: the content snapshot kept beside the record",
    )
    snapshot_skipped: str | None = Field(
        default=None, description="Why a project outside git has no snapshot (too large)"
    )


class Package(_Model):
    name: str
    version: str


class CondaInfo(_Model):
    """How a conda environment was solved; its conda-lock.yml is saved beside the record."""

    solver: str = Field(description="The solver and its version, e.g. rattler 0.28.0")
    channels: list[str] = Field(description="Channel URLs, by priority, credentials removed")
    platform: str = Field(description="The conda platform solved for, e.g. linux-64")
    virtual_packages: list[str] = Field(default_factory=list,
                                        description="Detected on the machine that solved")
    prefix: str | None = Field(default=None, description="Where the prefix was installed")


class EnvironmentInfo(_Model):
    kind: str = Field(description="What the project asks for: python_env, conda_env, docker_env")
    manager: str = Field(description="What built it: local, uv, virtualenv, conda, docker")
    python_version: str | None = None
    python_executable: str | None = None
    packages: list[Package] = Field(default_factory=list)
    cache_key: str | None = None
    lock_file: str | None = None
    lock_sha256: str | None = None
    conda: CondaInfo | None = None


class HostInfo(_Model):
    hostname: str
    os: str
    os_release: str
    architecture: str
    cpu_count: int | None
    python_version: str = Field(description="The interpreter running reprun")
    reprun_version: str


class RunnerProcess(_Model):
    """The reprun process that owns a RUNNING run, to tell a live run from a dead one."""

    hostname: str
    pid: int
    start_ticks: int | None = None


class OutputFile(_Model):
    path: str = Field(description="Relative to the run's output directory")
    size: int
    sha256: str


class DockerInfo(_Model):
    """How a Docker run ran: images by id, container settings; variable names, never values."""

    engine_version: str | None = None
    base_image: str = Field(description="The base image asked for, or 'Dockerfile PATH'")
    base_image_id: str | None = None
    image: str = Field(description="The derived image: reprun/<project>:<content hash>")
    image_id: str | None = None
    repo_digest: str | None = Field(default=None, description="Set once the image is pushed")
    built: bool = Field(description="False when an image with the same content was reused")
    dockerfile: str = Field(description="The generated Dockerfile, saved beside the record")
    build_log: str | None = Field(default=None, description="File beside the record, if built")
    container_name: str | None = None
    container_id: str | None = None
    command: list[str] = Field(default_factory=list, description="The container's command")
    workdir: str
    volumes: list[str] = Field(default_factory=list, description="source:target:mode")
    env_names: list[str] = Field(default_factory=list, description="Names of variables passed")
    network: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    kept: bool = Field(default=False, description="Whether the container was kept (not removed)")


class BackendInfo(_Model):
    name: str
    facts: dict[str, Any] = Field(default_factory=dict)
    docker: DockerInfo | None = None


class DriftEntry(_Model):
    """One entry of a recorded lock that this machine did not honour."""

    entry: str = Field(description="A package name, or 'python' for the interpreter")
    recorded: str | None = Field(description="The locked version; null if not in the lock")
    found: str | None = Field(description="What this machine has; null if missing")
    reason: str | None = Field(
        default=None, description="Why, when not a plain version difference (e.g. no wheel for "
                                  "this platform)")


class OutputsCheck(_Model):
    """The outputs of a reproduction compared with those of the run it reproduces."""

    result: str = Field(description="'identical', 'different' or 'missing'")
    different: list[str] = Field(default_factory=list, description="Same path, other content")
    missing: list[str] = Field(default_factory=list, description="In the original only")
    extra: list[str] = Field(default_factory=list, description="In the reproduction only")


class Reproduction(_Model):
    """How a reproduction was made from the record of ``RunRecord.reproduces``."""

    source: str = Field(description="'git' (the recorded commit and patch) or 'snapshot'")
    drift: list[DriftEntry] = Field(
        default_factory=list, description="Lock entries not honoured (only with --allow-drift)"
    )
    missing_paths: dict[str, str] = Field(
        default_factory=dict, description="path parameters whose file is gone: name to path"
    )
    check: OutputsCheck | None = None


class RunRecord(_Model):
    model_config = ConfigDict(extra="forbid", title="reprun run record")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: Status
    exit_code: int | None = None
    reason: str | None = Field(default=None, description="Why the run failed or was killed")
    entry_point: str
    parameters: dict[str, str] = Field(description="Name to the value as text, as used")
    command: str = Field(description="The exact command string run with bash -c")
    project: ProjectInfo
    source: SourceInfo
    environment: EnvironmentInfo
    backend: BackendInfo
    host: HostInfo
    runner: RunnerProcess | None = None
    output_dir: str
    outputs: list[OutputFile] = Field(default_factory=list)
    log_file: str = "output.log"
    started_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    reproduces: str | None = Field(default=None, description="The run this run reproduces")
    reproduction: Reproduction | None = None


def now() -> datetime:
    return datetime.now(timezone.utc)
