"""The run record: what ran, with what, where, and how it ended; the product of reprun.

`run.json` in the run's directory is the source of truth; it is written before the command starts
and replaced atomically at each step.

The types are frozen dataclasses (`runner.frozen.frozen_kw`), so that a run writes its record
without importing pydantic (0.2 s of start-up). Pydantic validates them all the same: reading a
record (``model_validate_json``) and the JSON Schema in ``schemas/`` go through a pydantic
``TypeAdapter`` built from these very classes; a field's docstring is its description.
`runner.record.model` gives them the few model methods the code uses (``model_copy``,
``model_dump``,
``model_dump_json``).
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from runner.frozen import frozen_kw
from runner.record.captured import CapturedMlflow
from runner.record.model import MODEL_CONFIG, Model
from runner.record.pipeline import PipelineInfo, StepInfo
from runner.record.status import Status

__all__ = ["PipelineInfo", "Status", "StepInfo"]  # besides the classes defined here

SCHEMA_VERSION = 1




@frozen_kw
class ProjectInfo(Model):
    """The project that ran."""

    uri: str
    """The project as given, credentials removed"""
    path: str
    """The directory the command ran in"""
    name: str
    spec_file: str | None = None
    """The MLproject file, if any"""


@frozen_kw
class SubmoduleInfo(Model):
    """A git submodule of the project, as checked out for the run."""

    path: str
    """Relative to the repository root (nested ones include parents)"""
    commit: str
    """The full SHA checked out, as the superproject records it"""
    url: str | None = None
    """Where it was fetched from, no credentials"""


@frozen_kw
class SnapshotInfo(Model):
    """A tar.gz of a project directory that is no git repository, to reproduce it from."""

    file: str
    """The archive beside the record"""
    sha256: str
    files: int
    """How many files it holds"""
    size: int
    """Their total size in bytes, uncompressed"""
    rules: list[str]
    """The exclude rules applied, gitignore syntax"""
    excluded: list[str] = field(default_factory=list)
    """What was left out (a directory ends with '/'); at most 200 entries"""
    excluded_count: int = 0
    """How many paths were left out in all"""


@frozen_kw
class SourceInfo(Model):
    """Where the code came from: repository, commit, uncommitted changes or snapshot."""

    uri: str | None = None
    """The repository URL or local directory, credentials and #subdirectory removed"""
    requested_version: str | None = None
    """--version as given (branch, tag, SHA); null for the default"""
    resolved_commit: str | None = None
    """Full SHA of what ran"""
    subdirectory: str | None = None
    """The project directory relative to the repository root"""
    checkout: str | None = None
    ("'in-place' (the user's directory) or 'clean' (a fresh checkout of resolved_commit made "
     "for this run)")
    submodules: list[SubmoduleInfo] = field(default_factory=list)
    git_commit: str | None = None
    git_branch: str | None = None
    git_remote: str | None = None
    """First remote URL, no credentials"""
    git_dirty: bool | None = None
    patch_file: str | None = None
    """Uncommitted changes (staged, unstaged, untracked) as a patch"""
    patch_sha256: str | None = None
    left_out: list[str] = field(default_factory=list)
    """Changed files kept out of the patch and the dirty flag: MLflow's own files (mlflow.db,
    mlruns/, mlartifacts/), which runs write, not code"""
    working_copy: bool | None = None
    """True when the command ran in a copy of the project directory made for it (a trial of a
    sweep), removed after it ended"""
    snapshot: SnapshotInfo | None = None
    """For a project outside git: the content snapshot kept beside the record"""
    snapshot_skipped: str | None = None
    """Why a project outside git has no snapshot (too large)"""


@frozen_kw
class Package(Model):
    """An installed distribution."""

    name: str
    version: str


@frozen_kw
class CondaInfo(Model):
    """How a conda environment was solved; its conda-lock.yml is saved beside the record."""

    solver: str
    """The solver and its version, e.g. rattler 0.28.0"""
    channels: list[str]
    """Channel URLs, by priority, credentials removed"""
    platform: str
    """The conda platform solved for, e.g. linux-64"""
    virtual_packages: list[str] = field(default_factory=list)
    """Detected on the machine that solved"""
    prefix: str | None = None
    """Where the prefix was installed"""


@frozen_kw
class ConvertedPackage(Model):
    """One conda dependency of a conda_env file installed from PyPI instead."""

    conda: str
    """The dependency as the file writes it"""
    pypi: str | None = None
    """The PyPI requirement it became; null when nothing was installed for it"""
    note: str | None = None
    """What changed on the way: another name, an ignored build string or channel, left to the
    environment, dropped with --allow-drift"""


@frozen_kw
class EnvironmentInfo(Model):
    """The environment the command ran in, as resolved: manager, interpreter, lock."""

    kind: str
    """What the project asks for: python_env, conda_env, docker_env"""
    manager: str
    """What built it: local, uv, virtualenv, conda, docker"""
    python_version: str | None = None
    python_executable: str | None = None
    packages: list[Package] = field(default_factory=list)
    cache_key: str | None = None
    lock_file: str | None = None
    lock_sha256: str | None = None
    conda: CondaInfo | None = None
    converted_from: str | None = None
    """'conda' when a conda_env file was installed from PyPI (--env-manager uv or virtualenv)"""
    conversion: list[ConvertedPackage] = field(default_factory=list)
    """How each conda dependency was carried over to PyPI"""


@frozen_kw
class HostInfo(Model):
    """The machine reprun ran on."""

    hostname: str
    os: str
    os_release: str
    architecture: str
    cpu_count: int | None
    python_version: str
    """The interpreter running reprun"""
    reprun_version: str


@frozen_kw
class RunnerProcess(Model):
    """The reprun process that owns a RUNNING run, to tell a live run from a dead one."""

    hostname: str
    pid: int
    start_ticks: int | None = None


@frozen_kw
class OutputFile(Model):
    """A file the run wrote into its output directory."""

    path: str
    """Relative to the run's output directory"""
    size: int
    digest: str | None = None
    """blake3:<hex>, the digest inputs are fingerprinted with"""
    sha256: str | None = None
    """Hex sha256, in records written before outputs had a BLAKE3 digest"""

    @property
    def content(self) -> str:
        """The digest as ``algorithm:hex``, whichever the record carries."""
        return self.digest or f"sha256:{self.sha256}"


@frozen_kw
class ProducedBy(Model):
    """An earlier run that wrote (to its outputs) a file with the content of an input."""

    run_id: str
    path: str
    """The file, relative to that run's output directory"""
    file: str | None = None
    """For a directory input: the file of the input that has this content"""


@frozen_kw
class InputInfo(Model):
    """Data the run read: a path parameter, an entry of the MLproject's data:, or data tracked by
    DVC; fingerprinted before the command started."""

    name: str
    """The parameter's name; for data: and DVC entries, the path as declared"""
    path: str
    """The path as given: absolute for a parameter, relative to the project otherwise"""
    kind: str
    """'param', 'data' or 'dvc'"""
    type: str
    """'file', 'directory' or 'missing' (DVC-tracked data not pulled)"""
    digest: str | None = None
    """blake3:<hex> of a file, or of a directory's manifest"""
    size: int = 0
    """Bytes, all files together"""
    files: int = 0
    manifest: str | None = None
    """For a directory: the file beside the record listing path, size and digest of each file"""
    dvc_md5: str | None = None
    """The md5 DVC records for it (<hex>.dir for a directory), as DVC wrote it"""
    dvc_file: str | None = None
    """The .dvc or dvc.lock file that records it, relative to the project"""
    produced_by: list[ProducedBy] = field(default_factory=list)
    """Earlier runs whose outputs have this content (a directory: file by file, at most 20)"""


@frozen_kw
class InputDrift(Model):
    """An input of the reproduced run whose content is different now (--allow-drift)."""

    name: str
    recorded: str | None
    found: str | None
    files: list[str] = field(default_factory=list)
    """What changed, 'path (changed|added|removed)', at most 20"""


@frozen_kw
class DockerInfo(Model):
    """How a Docker run ran: images by id, container settings; variable names, never values."""

    engine_version: str | None = None
    base_image: str
    """The base image asked for, or 'Dockerfile PATH'"""
    base_image_replaces: str | None = None
    """The docker_env.image that --docker-base-image replaced, if it did"""
    base_image_id: str | None = None
    image: str
    """The derived image: reprun/<project>:<content hash>"""
    image_id: str | None = None
    repo_digest: str | None = None
    """Set once the image is pushed"""
    built: bool
    """False when an image with the same content was reused"""
    dockerfile: str
    """The generated Dockerfile, saved beside the record"""
    build_log: str | None = None
    """File beside the record, if built"""
    container_name: str | None = None
    container_id: str | None = None
    command: list[str] = field(default_factory=list)
    """The container's command"""
    workdir: str
    volumes: list[str] = field(default_factory=list)
    """source:target:mode"""
    env_names: list[str] = field(default_factory=list)
    """Names of variables passed"""
    network: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    kept: bool = False
    """Whether the container was kept (not removed)"""


@frozen_kw
class BackendInfo(Model):
    """Where and how the command was executed."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    docker: DockerInfo | None = None


@frozen_kw
class DriftEntry(Model):
    """One entry of a recorded lock that this machine did not honour."""

    entry: str
    """A package name, or 'python' for the interpreter"""
    recorded: str | None
    """The locked version; null if not in the lock"""
    found: str | None
    """What this machine has; null if missing"""
    reason: str | None = None
    """Why, when not a plain version difference (e.g. no wheel for this platform)"""


@frozen_kw
class OutputsCheck(Model):
    """The outputs of a reproduction compared with those of the run it reproduces."""

    result: str
    """'identical', 'different' or 'missing'"""
    different: list[str] = field(default_factory=list)
    """Same path, other content"""
    missing: list[str] = field(default_factory=list)
    """In the original only"""
    extra: list[str] = field(default_factory=list)
    """In the reproduction only"""


@frozen_kw
class Reproduction(Model):
    """How a reproduction was made from the record of ``RunRecord.reproduces``."""

    source: str
    """'git' (the recorded commit and patch) or 'snapshot'"""
    drift: list[DriftEntry] = field(default_factory=list)
    """Lock entries not honoured (only with --allow-drift)"""
    missing_paths: dict[str, str] = field(default_factory=dict)
    """path parameters whose file is gone: name to path"""
    input_drift: list[InputDrift] = field(default_factory=list)
    """Inputs whose content changed since the recorded run (only with --allow-drift)"""
    check: OutputsCheck | None = None


@frozen_kw
class MetricSummary(Model):
    """One metric the run reported: its last value and how it went (the full history is in the
    record's ``metrics_file``)."""

    last: float
    """The last value reported"""
    step: int | None = None
    """The step of the last value, when it had one"""
    min: float
    max: float
    count: int
    """How many values were reported"""
    better: Literal["min", "max"] | None = None
    """Which value is best, as the MLproject declares it (metrics.better)"""


@frozen_kw
class MlflowInfo(Model):
    """The run reprun made for this run on an MLflow tracking server."""

    tracking_uri: str
    """The server, credentials removed"""
    experiment_id: str | None = None
    run_id: str | None = None
    """The MLflow run id; null while the run could not be created (see 'reprun runs sync')"""
    run_url: str | None = None
    """The run's page in the MLflow UI"""


@frozen_kw
class SweepRef(Model):
    """The sweep a run is a trial of ('reprun sweep')."""

    id: str
    """The sweep's id ('reprun sweep show ID')"""
    trial: int
    """The trial's index in the sweep, from 0"""


@frozen_kw
class RunRecord(Model):
    """One run of a project: what ran, with what, where, and how it ended."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {**MODEL_CONFIG, "title": "reprun run record"}

    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: Status
    exit_code: int | None = None
    reason: str | None = None
    """Why the run failed or was killed"""
    entry_point: str
    parameters: dict[str, str]
    """Name to the value as text, as used"""
    command: str
    """The exact command string run with bash -c"""
    project: ProjectInfo
    source: SourceInfo
    environment: EnvironmentInfo
    backend: BackendInfo
    host: HostInfo
    runner: RunnerProcess | None = None
    output_dir: str
    inputs: list[InputInfo] = field(default_factory=list)
    """The data the run read, fingerprinted before it started"""
    outputs: list[OutputFile] = field(default_factory=list)
    log_file: str = "output.log"
    started_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    reproduces: str | None = None
    """The run this run reproduces"""
    reproduction: Reproduction | None = None
    reuse_key: str | None = None
    """Digest of what decides the result (code, entry point, command, lock, backend, inputs); a
    FINISHED run with the same key is reused by 'reprun run --reuse'"""
    reused_from: str | None = None
    """The run whose outputs this run took instead of running (--reuse)"""
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    """What the run reported (metrics files, REPRUN_METRICS, printed lines), by name"""
    metrics_file: str | None = None
    """Every value reported, one JSON object a line, beside the record"""
    mlflow: MlflowInfo | None = None
    """The MLflow run on a tracking server, when tracking was on"""
    captured: CapturedMlflow | None = None
    """The project's own MLflow logging, answered by reprun when no tracking server was named"""
    sweep: SweepRef | None = None
    """The sweep this run is a trial of, if any"""
    kind: Literal["run", "pipeline"] = "run"
    """'pipeline' for the run of a pipeline, whose steps are runs of their own"""
    parent: str | None = None
    """The run this run is part of: a step's pipeline run, or the run that started it"""
    pipeline: PipelineInfo | None = None
    """For a pipeline run: its graph, options and the run of each step"""


def now() -> datetime:
    return datetime.now(timezone.utc)
