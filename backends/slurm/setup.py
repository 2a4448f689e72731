"""What a Slurm run checks while it is planned, before anything is recorded or submitted.

The config is valid, ``sbatch`` is on PATH and the partition exists (asked with ``sinfo``); the
environment is built on the shared file system, under ``WORKDIR/cache`` (one build per content
key, under the cache's file lock, which holds across machines on a file system with POSIX locks).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from backends.slurm import commands
from backends.slurm.settings import load_settings
from backends.slurm.stage import environments_dir, workdir_of
from runner.errors import UsageError


def check(backend_config: str | None, cwd: Path, env: Mapping[str, str]) -> str | None:
    """Refuse a run that cannot be submitted; returns the config's ``env_manager``."""
    config = load_settings(backend_config, cwd, env)
    if shutil.which("sbatch", path=env.get("PATH")) is None:
        raise UsageError("'sbatch' is not on PATH: --backend slurm submits jobs with Slurm's "
                         "commands", hint="run reprun on a machine of the cluster (a login "
                         "node), or add Slurm's commands to PATH")
    if config.partition is not None:
        known = commands.partitions(env)
        if config.partition not in known:
            raise UsageError(f"--backend-config partition: '{config.partition}' is not a "
                             f"partition of this cluster", hint=f"use one of: {', '.join(known)}")
    return config.env_manager


def build_env(backend_config: str | None, cwd: Path,
              base_env: Mapping[str, str]) -> dict[str, str]:
    """``base_env`` with ``REPRUN_CACHE_DIR`` on the shared file system (for the env build)."""
    config = load_settings(backend_config, cwd, base_env)
    cache = environments_dir(workdir_of(config, base_env, cwd))
    return {**base_env, "REPRUN_CACHE_DIR": str(cache)}
