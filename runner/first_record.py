"""A run's first record, written before anything runs: the source (its patch, or a snapshot of a
project outside git), copies of the project's files, the parameters, the command, the host and the
process that runs it. A run directory never exists without it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.environment import conversion_fields
from runner.fsutil import atomic_write_bytes, sha256_bytes
from runner.plan import Plan
from runner.process import process_start_ticks
from runner.record.host import host_info
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    ProjectInfo,
    Reproduction,
    RunnerProcess,
    RunRecord,
    SourceInfo,
    Status,
    SweepRef,
    now,
)
from runner.results import with_inputs

if TYPE_CHECKING:
    from runner.tracking.inputs import Found

Notify = Callable[[str], None]
PATCH_FILE = "source.patch"
SPEC_DIR = "spec"


def first_record(plan: Plan, store: RunStore, run_id: str, run_dir: Path,
                  found: list[Found] | None, notify: Notify) -> RunRecord:
    """The record written before anything runs; never a run directory without it."""
    try:
        record = _initial_record(plan, run_id, run_dir, notify)
        if found is not None:
            record = with_inputs(record, plan, found, run_dir, store)
        store.save(record)
    except BaseException as exc:
        store.discard(run_id)
        if isinstance(exc, OSError):
            raise store.cannot_write(exc, "the run was not started") from None
        raise
    return record


def _with_snapshot(plan: Plan, source: SourceInfo, run_dir: Path, notify: Notify) -> SourceInfo:
    """A project outside git keeps a snapshot of its files; a reproduction, the one it ran from."""
    from runner.source.snapshot import SNAPSHOT_FILE, SnapshotTooLarge, make_snapshot  # tarfile

    if plan.checkout.snapshot is not None:
        shutil.copyfile(plan.checkout.snapshot, run_dir / SNAPSHOT_FILE)
        return source
    try:
        snapshot = make_snapshot(plan.project.directory, run_dir / SNAPSHOT_FILE)
    except SnapshotTooLarge as exc:
        notify(f"warning: no snapshot: {exc}; this run cannot be reproduced from its record")
        return source.model_copy(update={"snapshot_skipped": str(exc)})
    return source.model_copy(update={"snapshot": snapshot})


def _initial_record(plan: Plan, run_id: str, run_dir: Path, notify: Notify) -> RunRecord:
    checkout = plan.checkout
    source = checkout.facts
    if checkout.patch:
        atomic_write_bytes(run_dir / PATCH_FILE, checkout.patch)
        source = source.model_copy(
            update={"patch_file": PATCH_FILE, "patch_sha256": sha256_bytes(checkout.patch)}
        )
    if checkout.snapshot is not None or (
        source.resolved_commit is None and source.checkout == "in-place"
    ):
        source = _with_snapshot(plan, source, run_dir, notify)
    if plan.workdir is not None:
        source = source.model_copy(update={"working_copy": True})
    _keep_spec(plan, run_dir / SPEC_DIR)
    replay = plan.replay
    output_dir = run_dir / "outputs"
    output_dir.mkdir()
    pid = os.getpid()
    host = host_info()
    return RunRecord(
        run_id=run_id,
        status=Status.RUNNING,
        entry_point=plan.options.entry_point,
        parameters=dict(plan.params.values),
        command=plan.params.command,
        project=ProjectInfo(
            uri=checkout.uri, path=str(plan.project.directory), name=plan.project.name,
            spec_file=str(plan.project.spec_file) if plan.project.spec_file else None,
        ),
        source=source,
        environment=EnvironmentInfo(kind=plan.project.env.kind, manager=plan.manager,
                                    **conversion_fields(plan)),
        backend=BackendInfo(name=plan.backend),
        host=host,
        runner=RunnerProcess(hostname=host.hostname, pid=pid, start_ticks=process_start_ticks(pid)),
        output_dir=str(output_dir),
        started_at=now(),
        reproduces=replay.run_id if replay else None,
        parent=plan.options.parent,
        sweep=SweepRef(id=plan.options.sweep_id, trial=plan.options.trial or 0)
        if plan.options.sweep_id is not None else None,
        reproduction=Reproduction(source=replay.source, missing_paths=dict(replay.missing_paths))
        if replay else None,
    )


def _keep_spec(plan: Plan, directory: Path) -> None:
    """Copies of the MLproject and environment files, so that an export carries them."""
    for path in (plan.project.spec_file, plan.project.env.file):
        if path is not None and path.is_file():
            directory.mkdir(exist_ok=True)
            shutil.copyfile(path, directory / path.name)
