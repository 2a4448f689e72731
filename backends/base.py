"""The execution contract: a frozen request in, a handle to follow it, an outcome out.

A backend (local, docker, kubernetes) turns a `RunRequest` into a `RunHandle`; `wait()` returns an
`Outcome`, which becomes part of the run record. One module per backend, registered by name in
`backends.BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from runner.envs.base import ResolvedEnv
from runner.frozen import frozen
from runner.record.types import BackendInfo, RunRecord, Status
from runner.spec.types import DockerEnv

if TYPE_CHECKING:
    from backends.docker.container import ContainerSpec


def _quiet(_message: str) -> None:
    return None


@frozen
class ArraySlot:
    """A trial of a sweep whose trials a backend may submit together (a Slurm job array):
    ``group`` names them, at most ``parallel`` run at once."""

    group: str
    parallel: int


@frozen
class RunRequest:
    """Everything a backend needs to run one command; built once, never changed."""

    run_id: str
    command: str
    workdir: Path
    env: Mapping[str, str]
    resolved_env: ResolvedEnv
    output_dir: Path
    log_path: Path
    grace_period: float = 10.0
    echo: bool = True
    project_name: str = ""
    entry_point: str = "main"
    env_kind: str = "none"
    docker_env: DockerEnv | None = None
    backend_config: str | None = None  # --backend-config as given: inline JSON or a file
    config_dir: Path | None = None  # what a relative --backend-config path is relative to
    run_dir: Path | None = None  # the record's directory, for files the backend saves
    metrics_stream: Path | None = None  # the file REPRUN_METRICS names here (runner.tracking)
    container: ContainerSpec | None = None
    # MLFLOW_RUN_ID, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID (already in ``env``): a backend
    # whose command does not inherit ``env`` passes these, and the MLflow credentials it finds in
    # ``env`` (never recorded), to the command.
    tracking_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    notify: Callable[[str], None] = _quiet
    detach: bool = False  # the caller returns once the run is submitted
    array: ArraySlot | None = None  # one of a sweep's trials, submitted with the others


@frozen
class Outcome:
    """How a run ended."""

    status: Status
    exit_code: int | None
    started_at: datetime
    ended_at: datetime
    reason: str | None = None
    facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class RunHandle(Protocol):
    def wait(self) -> Outcome:
        """Block until the run ends (or is stopped after `cancel`) and say how it ended."""
        ...

    def status(self) -> Status: ...

    def cancel(self, first_signal: int) -> None:
        """Ask the run to stop; safe to call from a signal handler; a second call hurries it."""
        ...

    def logs(self) -> Iterator[str]: ...

    def info(self) -> BackendInfo:
        """What the backend knows about this run once it started (images, container...)."""
        ...

    def facts(self) -> Mapping[str, Any]:
        """What the backend knows right after submission (ids, addresses), for the record."""
        ...


class Backend(Protocol):
    name: ClassVar[str]

    def submit(self, request: RunRequest) -> RunHandle: ...


@runtime_checkable
class RemoteBackend(Protocol):
    """A backend whose runs live elsewhere (a cluster): they can be previewed, detached from,
    completed later from their record, and cancelled from another process."""

    name: ClassVar[str]

    def submit(self, request: RunRequest) -> RunHandle: ...

    def preview(self, request: RunRequest) -> str:
        """What would be submitted (``--dry-run``), without contacting anything."""
        ...

    def refresh(self, record: RunRecord, run_dir: Path) -> RunRecord:
        """The record brought up to date from where the run lives (its log file too)."""
        ...

    def cancel_recorded(self, record: RunRecord, run_dir: Path) -> RunRecord:
        """Stop the run the record describes; the record marked KILLED."""
        ...

    def replay_config(self, record: RunRecord, run_dir: Path, override: str | None,
                      cwd: Path, notify: Callable[[str], None]) -> str:
        """The backend config to run ``record`` again (``override``: --backend-config)."""
        ...
