"""What a run read and wrote: its inputs fingerprinted (and checked against a reproduction's
record), its outputs listed with their digests, its end, and a run reused from an earlier one."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.base import Outcome
from runner.envs.base import Lock
from runner.envs.cache import cache_root
from runner.fsutil import atomic_write_text
from runner.plan import Plan
from runner.record.store import RunStore
from runner.record.types import OutputFile, RunRecord, Status, now
from runner.spec.types import ParamType

if TYPE_CHECKING:
    from runner.tracking.inputs import Found

Notify = Callable[[str], None]


def ended(
    record: RunRecord, status: Status, code: int | None, reason: str | None, facts: dict[str, Any]
) -> RunRecord:
    at = now()
    return record.model_copy(update={
        "status": status, "exit_code": code, "reason": reason, "ended_at": at,
        "duration_s": round((at - record.started_at).total_seconds(), 3),
        "backend": record.backend.model_copy(update={"facts": {**record.backend.facts, **facts}}),
    })


def finished(record: RunRecord, outcome: Outcome, output_dir: Path,
              env: Mapping[str, str]) -> RunRecord:
    from runner.nofollow import links_under

    facts = dict(outcome.facts)
    links = links_under(output_dir) if output_dir.is_dir() else []
    if links:  # left out of the outputs, never followed (they may point at the host)
        facts["outputs_links_not_followed"] = links
    done = ended(record, outcome.status, outcome.exit_code, outcome.reason, facts)
    return done.model_copy(update={"outputs": list_outputs(output_dir, env)})


def with_outputs(record: RunRecord) -> RunRecord:
    """A remote run that ended elsewhere: the outputs its backend brought back, recorded."""
    return record.model_copy(update={"outputs": list_outputs(Path(record.output_dir))})


def list_outputs(output_dir: Path, env: Mapping[str, str] | None = None) -> list[OutputFile]:
    """Every regular file under ``output_dir``, with its size and digest, sorted by path.

    The digests go into the stat cache (of ``env``'s cache root) at once: the command has ended,
    nothing writes these files any more, and a run that reads them next (or reuses them) need
    not read them."""
    paths = [p for p in sorted(output_dir.rglob("*")) if p.is_file() and not p.is_symlink()]
    if not paths:
        return []
    from runner.tracking.fingerprint import fingerprint_paths
    from runner.tracking.statcache import DATABASE, opened

    cache = cache_root(env) / DATABASE if env is not None else None
    with opened(cache, racy_s=0) as stat_cache:
        prints = fingerprint_paths(paths, stat_cache)
    return [OutputFile(path=p.relative_to(output_dir).as_posix(), size=f.size, digest=f.digest)
            for p, f in zip(paths, prints, strict=True)]


def digest_cache(plan: Plan) -> Path:
    from runner.tracking.statcache import DATABASE

    return cache_root(plan.options.base_env) / DATABASE


def declares_inputs(plan: Plan) -> bool:
    """Whether the run has inputs to fingerprint; cheap, so that a run without any imports
    nothing of runner.tracking (path parameters, data:, or a DVC repository)."""
    if plan.project.spec.data or any(
            d.type is ParamType.PATH and n in plan.params.values
            for n, d in plan.entry.parameters.items()):
        return True
    if plan.replay is not None and plan.replay.inputs:
        return True
    directory = plan.project.directory
    return any((d / ".dvc").is_dir() for d in (directory, *directory.parents))


def fingerprint_inputs(plan: Plan, notify: Notify) -> list[Found]:
    """The inputs and their fingerprints; a reproduction stops here if one changed."""
    from runner.tracking.inputs import (
        drift_error,
        fingerprint_sources,
        input_drift,
        input_sources,
        require_present,
    )
    from runner.tracking.statcache import opened

    project = plan.project
    sources = input_sources(project.directory, project.spec.data, plan.entry,
                            plan.params.values, project.spec_file)
    with opened(digest_cache(plan)) as cache:
        found = fingerprint_sources(sources, cache, plan.options.progress_live)
    replay = plan.replay
    if replay is None:
        for warning in require_present(found, project.spec_file):
            notify(f"warning: {warning}")
        return found
    drift = input_drift(replay.inputs, replay.record_dir, found)
    if drift and not replay.allow_drift:
        raise drift_error(replay.run_id, drift)
    for item in drift:
        notify(f"drift: input '{item.name}' changed: {', '.join(item.files)}")
    return found


def with_inputs(record: RunRecord, plan: Plan, found: list[Found], run_dir: Path,
                 store: RunStore) -> RunRecord:
    from runner.tracking.inputs import input_drift, input_records
    from runner.tracking.lineage import with_producers

    infos = with_producers(input_records(found, run_dir), found, store)
    update: dict[str, object] = {"inputs": infos}
    replay = plan.replay
    if replay is not None and record.reproduction is not None:
        drift = input_drift(replay.inputs, replay.record_dir, found)
        update["reproduction"] = record.reproduction.model_copy(update={"input_drift": drift})
    return record.model_copy(update=update)


def _reused_metrics(original: RunRecord, source: Path, run_dir: Path) -> dict[str, object]:
    """The metrics of a reused run are the new run's too: its summary and its history."""
    name = original.metrics_file
    if name is None or not (source / name).is_file():
        return {"metrics": original.metrics}
    shutil.copyfile(source / name, run_dir / name)
    return {"metrics": original.metrics, "metrics_file": name}


def reuse(plan: Plan, store: RunStore, record: RunRecord, lock: Lock,
           notify: Notify) -> RunRecord | None:
    """The run finished at once with the outputs of an earlier run with the same reuse key."""
    from runner.tracking.reuse import copy_outputs, reuse_key
    from runner.tracking.statcache import opened

    key = reuse_key(record, lock.sha256, lock.manager)
    if key is None:
        notify("--reuse: the code of this run cannot be identified (no commit, no snapshot); "
               "running it")
        return None
    run_dir = store.run_dir(record.run_id)
    for candidate in store.reusable(key):
        original = store.load(candidate)
        with opened(digest_cache(plan), racy_s=0) as cache:
            outputs = copy_outputs(original, Path(record.output_dir), cache)
        if outputs is None:
            notify(f"run {candidate[:8]} ran the same, but its outputs have changed since; "
                   "not reused")
            continue
        notify(f"unchanged since run {candidate[:8]}: reusing its outputs")
        atomic_write_text(run_dir / lock.filename, lock.content)
        atomic_write_text(run_dir / record.log_file,
                          f"reprun: unchanged since run {candidate}: reused its outputs\n")
        environment = original.environment.model_copy(
            update={"lock_file": lock.filename, "lock_sha256": lock.sha256})
        done = ended(record.model_copy(update={
            "environment": environment, "reuse_key": key, "reused_from": candidate,
            "outputs": outputs, "runner": None,
            **_reused_metrics(original, store.run_dir(candidate), run_dir),
        }), Status.FINISHED, 0, None, {})
        store.save(done)
        return done
    return None
