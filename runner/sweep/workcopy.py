"""Each trial of a sweep that runs on this machine, in its own working copy of the project.

Trials run at the same time; files a command writes into its directory (a model, a database, a
cache) must not meet another trial's. The copy leaves out what a snapshot leaves out (VCS and
virtualenv folders, caches, MLflow's own files) and is removed once the trial has ended; the
trial's record says it ran in one (``source.working_copy``). A project directory over
`MAX_COPY_BYTES` is not copied (its trials share it, and a warning says so): data that large
belongs outside the project, named by a path parameter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.plan import Plan

MAX_COPY_BYTES = 256 * 1024 * 1024
LEFT_OUT = (".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox",
            ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules", "mlruns",
            "mlartifacts", "mlflow.db")


@contextlib.contextmanager
def working_copy(plan: Plan, root: Path, notify: Callable[[str], None]) -> Iterator[Plan]:
    """``plan`` running in a copy of its project directory under ``root``, removed after; the
    plan unchanged for a backend that copies the project itself (Docker, Kubernetes)."""
    if plan.backend != "local":
        yield plan
        return
    source = plan.project.directory
    size = _size(source)
    if size is None:
        notify(f"warning: the project directory holds more than {MAX_COPY_BYTES >> 20} MiB: "
               "the trials run in it, not each in a copy of their own")
        yield plan
        return
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"trial-{plan.options.trial}-", dir=root))
    try:
        target = scratch / source.name
        shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(*LEFT_OUT))
        yield dataclasses.replace(plan, workdir=target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _size(directory: Path) -> int | None:
    """The bytes a copy would hold; None once over the limit."""
    total = 0
    for top, folders, files in os.walk(directory):
        folders[:] = [f for f in folders if f not in LEFT_OUT]
        for name in files:
            if name in LEFT_OUT:
                continue
            with contextlib.suppress(OSError):
                total += (Path(top) / name).lstat().st_size
            if total > MAX_COPY_BYTES:
                return None
    return total
