"""The Kubernetes backend: the run's command as a Job, pinned by image digest, followed to its end.

``submit`` renders the Job (`backends.kubernetes.manifest`), saves it beside the record, creates
it and returns a handle that streams the pod's logs and maps the Job's conditions to the run's
status (`backends.kubernetes.watch`). ``cancel`` deletes the Job with foreground propagation, so no
pod survives. A detached run is completed later by `refresh` (``reprun runs show/logs``) or ended by
`cancel_recorded` (``reprun cancel``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from backends.base import Outcome, RunHandle, RunRequest
from backends.kubernetes.config import LoadedConfig, load_config
from backends.kubernetes.image import ImageRequest, PinnedImage, pinned_image
from backends.kubernetes.manifest import RUN_LABEL, JobInputs, Rendered, job_name, render_job
from runner.fsutil import atomic_write_bytes, atomic_write_text
from runner.record.types import BackendInfo, RunRecord, Status, now

if TYPE_CHECKING:
    from backends.kubernetes.api import Cluster

MANIFEST_FILE = "job.yaml"
POD_OUTPUT_DIR = "/var/tmp/reprun-outputs"
# REPRUN_METRICS in the pod: appends succeed, but the file stays in the pod (printed metrics are
# read from the log, which does come back).
POD_METRICS_FILE = "/var/tmp/reprun-metrics.jsonl"
GONE_WAIT_S = 60.0


def _inputs(request: RunRequest, loaded: LoadedConfig, image: PinnedImage,
            namespace: str) -> JobInputs:
    env = {"REPRUN_RUN_ID": request.run_id, "REPRUN_OUTPUT_DIR": POD_OUTPUT_DIR,
           "REPRUN_METRICS": POD_METRICS_FILE, "PYTHONUNBUFFERED": "1"}
    copies: tuple[str, ...] = ()
    if request.tracking_env:
        from runner.tracking.settings import for_pod

        tracking, copies = for_pod(request.tracking_env, request.env)
        env.update(tracking)
    return JobInputs(
        run_id=request.run_id, project_name=request.project_name,
        entry_point=request.entry_point, command=request.command, image=image.reference,
        namespace=namespace, env=env, docker_env=request.docker_env, host_env=request.env,
        host_copies=copies,
    )


def _image_request(request: RunRequest, loaded: LoadedConfig) -> ImageRequest:
    docker = request.docker_env
    return ImageRequest(
        run_id=request.run_id, project_name=request.project_name, project_dir=request.workdir,
        env_kind=request.env_kind, resolved_env=request.resolved_env,
        base_image=docker.image if docker else None,
        repository_uri=loaded.config.repository_uri, container=request.container,
        config_base_image=loaded.config.base_image, env=request.env,
        run_dir=request.run_dir, notify=request.notify,
    )


def _namespace(loaded: LoadedConfig, fallback: str) -> str:
    template_ns = ((loaded.template or {}).get("metadata") or {}).get("namespace")
    return loaded.config.namespace or template_ns or fallback


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)


class KubernetesBackend:
    name: ClassVar[str] = "kubernetes"

    def preview(self, request: RunRequest) -> str:
        """The Job manifest, without contacting the cluster or a registry."""
        loaded = load_config(request.backend_config, request.config_dir or Path.cwd())
        image = pinned_image(loaded.config, _image_request(request, loaded), resolve=False)
        namespace = _namespace(loaded, "default")
        rendered = render_job(loaded.config, loaded.template,
                              _inputs(request, loaded, image, namespace))
        return manifest_yaml(rendered.saved)

    def submit(self, request: RunRequest) -> RunHandle:
        from backends.kubernetes.api import connect

        loaded = load_config(request.backend_config, request.config_dir or Path.cwd())
        cluster = connect(loaded.config.kube_context)
        namespace = _namespace(loaded, cluster.default_namespace)
        image = pinned_image(loaded.config, _image_request(request, loaded), resolve=True)
        rendered = render_job(loaded.config, loaded.template,
                              _inputs(request, loaded, image, namespace))
        if request.run_dir is not None:
            atomic_write_text(request.run_dir / MANIFEST_FILE, manifest_yaml(rendered.saved))
        created = _create(cluster, namespace, rendered, request.run_id)
        facts = _submit_facts(cluster, namespace, created, image, rendered, loaded)
        return KubernetesHandle(request, cluster, loaded, facts)

    def refresh(self, record: RunRecord, run_dir: Path) -> RunRecord:
        return refresh_record(record, run_dir)

    def cancel_recorded(self, record: RunRecord, run_dir: Path) -> RunRecord:
        return cancel_record(record, run_dir)


def _create(cluster: Cluster, namespace: str, rendered: Rendered, run_id: str) -> dict[str, Any]:
    """Create the Job; a 409 for our own Job (a retried create that had gone through) is fine."""
    from backends.kubernetes.api import Conflict
    from backends.kubernetes.api import request as api_request

    name = rendered.manifest["metadata"]["name"]
    try:
        return api_request(f"create the Job in namespace '{namespace}'",
                           cluster.batch.create_namespaced_job, namespace, rendered.manifest)
    except Conflict:
        existing = api_request("read the Job", cluster.batch.read_namespaced_job, name, namespace)
        if existing.get("metadata", {}).get("labels", {}).get(RUN_LABEL) != run_id:
            raise
        return existing


def _submit_facts(cluster: Cluster, namespace: str, created: Mapping[str, Any],
                  image: PinnedImage, rendered: Rendered, loaded: LoadedConfig) -> dict[str, Any]:
    meta = created.get("metadata", {})
    return {
        "cluster_server": cluster.server,
        "kube_context": cluster.context,
        "namespace": namespace,
        "job_name": meta.get("name", rendered.manifest["metadata"]["name"]),
        "job_uid": meta.get("uid"),
        "image": image.reference,
        "image_digest": image.digest,
        "image_source": image.source,
        "image_pushed": image.pushed,
        "image_built": image.built,
        **image.facts,
        "manifest_file": MANIFEST_FILE,
        "job_template": str(loaded.template_path) if loaded.template_path else None,
        "poll_seconds": loaded.config.poll_seconds,
    }


class KubernetesHandle:
    """A submitted Job. ``wait`` follows it; ``cancel`` (signal-safe) asks ``wait`` to delete it."""

    def __init__(self, request: RunRequest, cluster: Cluster, loaded: LoadedConfig,
                 facts: dict[str, Any]) -> None:
        self.request, self.cluster, self.loaded = request, cluster, loaded
        self._facts = facts
        self._stop = threading.Event()
        self._signal: int | None = None
        self._outcome: Outcome | None = None
        self._log = request.log_path.open("ab")
        self._lock = threading.Lock()
        self.started_at = now()

    def info(self) -> BackendInfo:
        return BackendInfo(name=KubernetesBackend.name)

    def facts(self) -> Mapping[str, Any]:
        return MappingProxyType(dict(self._facts))

    def _sink(self, data: bytes) -> None:
        with self._lock:
            self._log.write(data)
            self._log.flush()
        if self.request.echo:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def cancel(self, first_signal: int = signal.SIGINT) -> None:
        if self._signal is None:
            self._signal = first_signal
        self._stop.set()

    def status(self) -> Status:
        return self._outcome.status if self._outcome else Status.RUNNING

    def wait(self) -> Outcome:
        from backends.kubernetes.watch import Follower

        if self._outcome is not None:
            return self._outcome
        config = self.loaded.config
        follower = Follower(self.cluster, self._facts["namespace"], self._facts["job_name"],
                            self._sink, config.poll_seconds,
                            config.unschedulable_timeout_seconds, self._stop)
        try:
            verdict = follower.run()
            facts = {**self._facts, **follower.progress.facts()}
            if verdict is None:
                delete_job(self.cluster, self._facts["namespace"], self._facts["job_name"])
                follower.finish_logs()
                name = signal.Signals(self._signal or signal.SIGINT).name
                facts["signal"] = name
                self._outcome = Outcome(Status.KILLED, None, self.started_at, now(),
                                        f"stopped by {name}: the Job was deleted",
                                        MappingProxyType(facts))
            else:
                if verdict.cleanup:
                    delete_job(self.cluster, self._facts["namespace"], self._facts["job_name"])
                facts["log_reconnects"] = follower.reconnects()
                self._outcome = Outcome(verdict.status, verdict.exit_code, self.started_at,
                                        now(), verdict.reason, MappingProxyType(facts))
        finally:
            with self._lock:
                self._log.close()
        return self._outcome

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle


def delete_job(cluster: Cluster, namespace: str, name: str) -> None:
    """Delete the Job with foreground propagation and wait (bounded) until its pods are gone."""
    from backends.kubernetes.api import NotFound
    from backends.kubernetes.api import request as api_request

    try:
        api_request(f"delete the Job '{name}'", cluster.batch.delete_namespaced_job, name,
                    namespace, propagation_policy="Foreground", grace_period_seconds=0)
    except NotFound:
        return
    deadline = time.monotonic() + GONE_WAIT_S
    while time.monotonic() < deadline:
        pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod, namespace,
                           label_selector=f"job-name={name}")
        if not pods.get("items"):
            return
        time.sleep(0.5)


def _reconnect(record: RunRecord) -> tuple[Cluster, str, str]:
    from backends.kubernetes.api import connect

    facts = record.backend.facts
    cluster = connect(facts.get("kube_context"))
    return cluster, str(facts["namespace"]), str(facts["job_name"])


def refresh_record(record: RunRecord, run_dir: Path) -> RunRecord:
    """Ask the cluster how a detached run is doing; its log and (when it ended) its end."""
    from backends.kubernetes.api import NotFound
    from backends.kubernetes.api import request as api_request
    from backends.kubernetes.watch import Progress, interpret, read_log

    cluster, namespace, name = _reconnect(record)
    try:
        job: dict[str, Any] | None = api_request(
            "read the Job", cluster.batch.read_namespaced_job, name, namespace)
    except NotFound:
        job = None
    pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod, namespace,
                       label_selector=f"job-name={name}").get("items") or []
    progress = Progress(phases=list(record.backend.facts.get("pod_phases", [])))
    progress.observe(pods)
    if progress.pod_name:
        log = read_log(cluster, namespace, progress.pod_name)
        if log is not None:
            atomic_write_bytes(run_dir / record.log_file, log)
    facts = {**record.backend.facts, **progress.facts()}
    verdict = interpret(job, pods, None, float("inf"))
    updated = record.model_copy(update={"backend": BackendInfo(name=record.backend.name,
                                                               facts=facts)})
    if verdict is None:
        return updated
    reason = verdict.reason
    status = verdict.status
    if job is None:
        status, reason = Status.FAILED, "the Job no longer exists in the cluster; outcome unknown"
    ended = _completion_time(job) or now()
    return updated.model_copy(update={
        "status": status, "exit_code": verdict.exit_code, "reason": reason, "ended_at": ended,
        "duration_s": round((ended - record.started_at).total_seconds(), 3),
    })


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


__all__ = ["KubernetesBackend", "cancel_record", "job_name", "refresh_record"]
