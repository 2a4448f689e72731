"""A recorded (detached) Kubernetes run: brought up to date from the cluster (``reprun runs
show/logs``), cancelled (``reprun cancel``), and its backend config made again for a
reproduction."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.kubernetes.config import load_config
from backends.kubernetes.jobs import delete_job, release_pods
from backends.kubernetes.outputs import split_log, unpack
from runner.errors import BackendError
from runner.fsutil import atomic_write_bytes
from runner.record.types import BackendInfo, RunRecord, Status, now

if TYPE_CHECKING:
    from backends.kubernetes.api import Cluster


def _reconnect(record: RunRecord) -> tuple[Cluster, str, str]:
    from backends.kubernetes.api import connect

    facts = record.backend.facts
    cluster = connect(facts.get("kube_context"))
    return cluster, str(facts["namespace"]), str(facts["job_name"])


def refresh_record(record: RunRecord, run_dir: Path) -> RunRecord:
    """Ask the cluster how a detached run is doing: its log, outputs and (when it ended) its end.

    A run that cannot go on (its image cannot be pulled, its pod was never created or started
    in ``start_timeout_seconds``) has its Job deleted here, as the attached run would.
    """
    from backends.kubernetes.api import NotFound
    from backends.kubernetes.api import request as api_request
    from backends.kubernetes.verdict import Progress, Waiting, interpret
    from backends.kubernetes.watch import Events, read_log

    cluster, namespace, name = _reconnect(record)
    try:
        job: dict[str, Any] | None = api_request(
            "read the Job", cluster.batch.read_namespaced_job, name, namespace)
    except NotFound:
        job = None
    pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod, namespace,
                       label_selector=f"job-name={name}").get("items") or []
    facts = record.backend.facts
    progress = Progress(phases=list(facts.get("pod_phases", [])))
    progress.observe(pods)
    events = Events(cluster, namespace, None)
    events.poll([("Job", name)] + ([("Pod", progress.pod_name)] if progress.pod_name else []))
    collected = None
    if progress.pod_name:
        log = read_log(cluster, namespace, progress.pod_name)
        if log is not None:
            user_log, collected = split_log(log, record.run_id)
            atomic_write_bytes(run_dir / record.log_file, user_log)
    facts = {**facts, **progress.facts()}
    if events.warnings:
        facts["warnings"] = events.warnings
    created = _stamp((job or {}).get("metadata", {}).get("creationTimestamp"))
    waited = (now() - (created or record.started_at)).total_seconds()
    waiting = Waiting(not_started_s=None if progress.started or job is None else waited,
                      start_limit_s=float(facts.get("start_timeout_seconds", float("inf"))),
                      warning=events.last)
    verdict = interpret(job, pods, waiting)
    updated = record.model_copy(update={"backend": BackendInfo(name=record.backend.name,
                                                               facts=facts)})
    if verdict is None:
        return updated
    if verdict.cleanup and job is not None:
        problem = delete_job(cluster, namespace, name)
        if problem:
            facts["cleanup_problem"] = problem
    release_pods(cluster, namespace, name)
    if collected is not None:
        problem = unpack(collected, Path(record.output_dir),
                         int(facts.get("outputs_max_bytes", 0)))
        if problem:
            facts["outputs_problem"] = problem
    ended = _completion_time(job) or now()
    return updated.model_copy(update={
        "status": verdict.status, "exit_code": verdict.exit_code, "reason": verdict.reason,
        "ended_at": ended, "duration_s": round((ended - record.started_at).total_seconds(), 3),
        "backend": BackendInfo(name=record.backend.name, facts=facts),
    })


def _stamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def _completion_time(job: Mapping[str, Any] | None) -> datetime | None:
    status = (job or {}).get("status", {})
    stamps = [status.get("completionTime")] + [
        c.get("lastTransitionTime") for c in status.get("conditions") or []
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
    ]
    for stamp in stamps:
        if stamp:
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return None


def cancel_record(record: RunRecord, run_dir: Path) -> RunRecord:
    """End a run from its record: keep its log, delete the Job (foreground), mark it KILLED."""
    from backends.kubernetes.watch import read_log

    cluster, namespace, name = _reconnect(record)
    pod = record.backend.facts.get("pod_name")
    if pod:
        log = read_log(cluster, namespace, str(pod))
        if log is not None:
            atomic_write_bytes(run_dir / record.log_file, log)
    delete_job(cluster, namespace, name)
    ended = now()
    return record.model_copy(update={
        "status": Status.KILLED, "reason": "cancelled with 'reprun cancel': the Job was deleted",
        "ended_at": ended, "duration_s": round((ended - record.started_at).total_seconds(), 3),
    })


def replay_config(record: RunRecord, run_dir: Path, override: str | None, cwd: Path,
                  notify: Callable[[str], None]) -> str:
    """The backend config to reproduce ``record``: the recorded one, ``override``'s keys on top.

    The recorded Job template (kept beside the record) replaces the path to the original file;
    the recorded image, by digest, is run again when the registry still has it (else the
    image is built again from the recorded lock, if the config names a repository).
    """
    facts = record.backend.facts
    config: dict[str, Any] = dict(facts.get("backend_config") or {})
    template = facts.get("job_template_file")
    if template and (run_dir / str(template)).is_file():
        config["kube-job-template-path"] = str((run_dir / str(template)).resolve())
    elif config.get("kube-job-template-path") and facts.get("job_template"):
        config["kube-job-template-path"] = str(facts["job_template"])
    given = load_config(override, cwd).config.recordable() if override else {}
    image = facts.get("image")
    if image and facts.get("image_digest") and "image" not in given:
        pullable = _pullable(str(image))
        if pullable is False:
            again = ("it is built again from the recorded lock" if facts.get("image_source") ==
                     "built" else "the backend config's image is used")
            notify(f"warning: the registry no longer has the recorded image {image}; {again}")
        else:
            config["image"] = str(image)
            if pullable is None:
                notify(f"note: the registry of {image} could not be asked whether it still has "
                       "the image; the cluster pulls it by digest")
    config.update(given)
    if override and not override.lstrip().startswith("{"):
        template_given = given.get("kube-job-template-path")
        if template_given:
            base = (cwd / override).resolve().parent
            config["kube-job-template-path"] = str((base / template_given).resolve())
    return json.dumps(config)


def _pullable(reference: str) -> bool | None:
    """Whether the registry still has ``name@digest`` (None: it could not be asked)."""
    from backends.kubernetes.registry import Registry, parse_reference

    ref = parse_reference(reference)
    if not ref.digest:
        return None
    try:
        return Registry(ref.registry).manifest_digest(ref.repository, ref.digest) == ref.digest
    except (BackendError, OSError):
        return None
