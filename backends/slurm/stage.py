"""What a job needs on the shared file system, and the exact ``sbatch`` argv that submits it.

Under ``WORKDIR/runs/RUN_ID/``: ``code/`` (the project's files as the run has them: the exact
commit and uncommitted changes of a git checkout, or the files of a snapshot; what .gitignore,
.reprunignore and the built-in rules leave out is not copied), ``job.sh`` (the batch script: the
command, quoted, run by bash in ``code/``), ``job.log`` (the job's output, followed live),
``outputs/`` (``REPRUN_OUTPUT_DIR`` of the job, copied back into the store when it ends) and
``metrics.jsonl`` (``REPRUN_METRICS``).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from backends.slurm.settings import Settings
from runner.errors import UsageError
from runner.frozen import frozen
from runner.fsutil import atomic_write_text
from runner.record.home import reprun_home
from runner.source.snapshot import parse_rules, project_rules, walk

SCRIPT = "job.sh"
LOG = "job.log"
OUTPUTS = "outputs"
METRICS = "metrics.jsonl"


@frozen
class Staged:
    """Where a run's job finds its files."""

    root: Path
    code: Path
    script: Path
    log: Path
    outputs: Path
    metrics: Path

    @classmethod
    def at(cls, root: Path) -> Staged:
        return cls(root, root / "code", root / SCRIPT, root / LOG, root / OUTPUTS,
                   root / METRICS)


def workdir_of(config: Settings, base_env: Mapping[str, str], cwd: Path) -> Path:
    """The shared directory: the config's ``workdir`` (relative to ``cwd``), else
    ``REPRUN_HOME/slurm``."""
    if config.workdir is None:
        return reprun_home(base_env) / "slurm"
    path = Path(config.workdir).expanduser()
    return path if path.is_absolute() else (cwd / path).resolve()


def environments_dir(workdir: Path) -> Path:
    """The cache of environments the jobs run in (``REPRUN_CACHE_DIR`` of the build)."""
    return workdir / "cache"


def stage(run_id: str, project_dir: Path, command: str, workdir: Path) -> Staged:
    """Copy the project's files and write the batch script; returns where they are."""
    staged = Staged.at(workdir / "runs" / run_id)
    try:
        staged.root.mkdir(parents=True, exist_ok=True)
        if staged.code.exists():
            shutil.rmtree(staged.code)
        _copy_tree(project_dir, staged.code)
        staged.outputs.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot stage the run in workdir {workdir}: "
                         f"{exc.strerror or exc}", hint="give a writable shared directory as "
                         "'workdir' in --backend-config") from None
    atomic_write_text(staged.script, script_text(run_id, command), durable=False)
    staged.script.chmod(0o755)
    return staged


def script_text(run_id: str, command: str) -> str:
    return ("#!/bin/bash\n"
            f"# reprun run {run_id}: the project's command, run by bash in the staged code\n"
            f"exec bash -c {shlex.quote(command)}\n")


def _copy_tree(source: Path, dest: Path) -> None:
    included, _excluded = walk(source, parse_rules(project_rules(source)))
    dest.mkdir(parents=True)
    for rel in included:
        origin, target = source / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(origin.readlink())
        elif origin.is_file():
            shutil.copy2(origin, target)


def sbatch_argv(config: Settings, staged: Staged, run_id: str) -> list[str]:
    """``sbatch --parsable`` with one ``--option=value`` item per config key, then the script."""
    return submit_argv(config, [f"--job-name=reprun-{run_id[:8]}", f"--output={staged.log}",
                                "--open-mode=append", f"--chdir={staged.code}"], staged.script)


def submit_argv(config: Settings, own: list[str], script: Path) -> list[str]:
    """``sbatch --parsable``, reprun's ``own`` options, the config's, then ``script``."""
    options = (("partition", config.partition), ("account", config.account),
               ("qos", config.qos), ("time", config.time),
               ("cpus-per-task", config.cpus_per_task), ("mem", config.mem),
               ("gres", f"gpu:{config.gpus}" if config.gpus else None),
               ("nodes", config.nodes), ("constraint", config.constraint),
               ("exclude", config.exclude))
    given = [f"--{name}={value}" for name, value in options if value is not None]
    return ["sbatch", "--parsable", *own, *given, *config.extra_args, str(script)]


def job_env(env: Mapping[str, str], staged: Staged) -> dict[str, str]:
    """The environment sbatch passes on to the job (``--export=ALL``): the run's, with its
    outputs and metrics going to the shared directory."""
    from runner.tracking.metricfiles import STREAM_VARIABLE

    return {**env, "REPRUN_OUTPUT_DIR": str(staged.outputs),
            STREAM_VARIABLE: str(staged.metrics)}


def bring_back(staged: Staged, output_dir: Path, metrics: Path | None) -> None:
    """The job's outputs and metrics, copied into the run's record (same file system or not)."""
    if staged.outputs.is_dir():
        shutil.copytree(staged.outputs, output_dir, symlinks=True, dirs_exist_ok=True)
    if metrics is not None and staged.metrics.is_file():
        shutil.copyfile(staged.metrics, metrics)
