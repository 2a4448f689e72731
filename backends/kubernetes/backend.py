"""The Kubernetes backend: the run's command as a Job, pinned by image digest, followed to its end.

``submit`` checks the permissions it needs (SelfSubjectAccessReview), renders the Job
(`backends.kubernetes.manifest`), saves it beside the record with the backend config (secrets are
references, never values), creates it and returns a handle that streams the pod's logs, shows its
warning events and maps the Job's conditions to the run's status (`backends.kubernetes.watch`).
The files the pod wrote to ``REPRUN_OUTPUT_DIR`` come back through its log
(`backends.kubernetes.outputs`). ``cancel`` deletes the pods (with ``--grace-period``) and the Job
(foreground), so no pod survives; whatever learns that a run ended (the attached handle, or
`refresh` of a detached run) deletes a Job that would otherwise go on retrying. A detached run is
completed later by `refresh` (``reprun runs show/logs``) or ended by `cancel_recorded`
(``reprun cancel``), both in `backends.kubernetes.recorded`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from backends.base import Outcome, RunHandle, RunRequest
from backends.kubernetes.config import LoadedConfig, load_config
from backends.kubernetes.image import ImageRequest, PinnedImage, pinned_image
from backends.kubernetes.jobs import delete_job, release_pods
from backends.kubernetes.manifest import (
    OUTCOME_FINALIZER,
    RUN_LABEL,
    JobInputs,
    Rendered,
    job_name,
    render_job,
)
from backends.kubernetes.outputs import OutputSplitter, unpack
from runner.errors import BackendError
from runner.fsutil import atomic_write_text
from runner.record.types import BackendInfo, RunRecord, Status, now

if TYPE_CHECKING:
    from backends.kubernetes.api import Cluster

MANIFEST_FILE = "job.yaml"
TEMPLATE_FILE = "job-template.yaml"
POD_OUTPUT_DIR = "/var/tmp/reprun-outputs"
# REPRUN_METRICS in the pod: appends succeed, but the file stays in the pod (printed metrics are
# read from the log, which does come back).
POD_METRICS_FILE = "/var/tmp/reprun-metrics.jsonl"
# What following a run needs: (verb, group, resource, subresource).
NEEDED = (("create", "batch", "jobs", ""), ("get", "batch", "jobs", ""),
          ("delete", "batch", "jobs", ""), ("list", "", "pods", ""), ("watch", "", "pods", ""),
          ("get", "", "pods", "log"), ("delete", "", "pods", ""))


def _inputs(request: RunRequest, loaded: LoadedConfig, image: PinnedImage,
            namespace: str) -> JobInputs:
    env = {"REPRUN_RUN_ID": request.run_id, "REPRUN_OUTPUT_DIR": POD_OUTPUT_DIR,
           "REPRUN_METRICS": POD_METRICS_FILE, "PYTHONUNBUFFERED": "1"}
    copies: tuple[str, ...] = ()
    if request.tracking_env:
        from runner.tracking.mlflow import for_pod

        tracking, copies = for_pod(request.tracking_env, request.env)
        env.update(tracking)
    else:
        from runner.tracking.mlflow.endpoint.podstore import pod_env, wanted_for_pod

        if wanted_for_pod(request.tracking_env, request.env):
            env.update(pod_env(POD_OUTPUT_DIR))  # read back with the outputs (podstore)
    return JobInputs(
        run_id=request.run_id, project_name=request.project_name,
        entry_point=request.entry_point, command=request.command, image=image.reference,
        namespace=namespace, env=env, docker_env=request.docker_env, host_env=request.env,
        outputs_max_bytes=loaded.config.outputs_max_bytes,
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
        run_dir=request.run_dir, notify=request.notify, command=request.command,
        platform=loaded.config.platform,
        insecure_registries=tuple(loaded.config.insecure_registries), config=loaded.config,
    )


def _namespace(loaded: LoadedConfig, fallback: str) -> str:
    template_ns = ((loaded.template or {}).get("metadata") or {}).get("namespace")
    return loaded.config.namespace or template_ns or fallback


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML; a text of several lines (the shell wrapper) as a literal block."""

    class BlockDumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        block = "\n" in value and not any(line != line.rstrip() for line in value.splitlines())
        return dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                       style="|" if block else None)

    BlockDumper.add_representer(str, text)
    return yaml.dump(dict(manifest), Dumper=BlockDumper, sort_keys=False,
                     default_flow_style=False)


class KubernetesBackend:
    name: ClassVar[str] = "kubernetes"

    def preview(self, request: RunRequest) -> str:
        """The Job manifest, without contacting the cluster or a registry."""
        loaded = load_config(request.backend_config, request.config_dir or Path.cwd())
        image = pinned_image(loaded.config, _image_request(request, loaded), resolve=False)
        namespace = _namespace(loaded, "default")
        rendered = render_job(loaded.config, loaded.template,
                              _inputs(request, loaded, image, namespace))
        way = image.facts.get("image_builder")
        said = f"# image builder: {way} ({image.facts['image_builder_reason']})\n" if way else ""
        return said + manifest_yaml(rendered.saved)

    def submit(self, request: RunRequest) -> RunHandle:
        from backends.kubernetes.api import connect

        loaded = load_config(request.backend_config, request.config_dir or Path.cwd())
        cluster = connect(loaded.config.kube_context)
        if cluster.insecure:
            request.notify(f"warning: the kubeconfig skips TLS verification of {cluster.server}"
                           " (insecure-skip-tls-verify); its certificate is not checked")
        namespace = _namespace(loaded, cluster.default_namespace)
        image = pinned_image(loaded.config, _image_request(request, loaded), resolve=True)
        rendered = render_job(loaded.config, loaded.template,
                              _inputs(request, loaded, image, namespace))
        ttl = rendered.manifest["spec"].get("ttlSecondsAfterFinished")
        check_access(cluster, namespace, NEEDED + ((("patch", "", "pods", ""),)
                                                   if ttl is not None else ()))
        if request.run_dir is not None:
            atomic_write_text(request.run_dir / MANIFEST_FILE, manifest_yaml(rendered.saved))
            if loaded.template is not None:
                atomic_write_text(request.run_dir / TEMPLATE_FILE, manifest_yaml(loaded.template))
        if request.detach and ttl is not None:
            request.notify(f"warning: the Job is deleted {ttl} s after it ends "
                           "(ttlSecondsAfterFinished); its pod waits (finalizer "
                           f"{OUTCOME_FINALIZER}) until 'reprun runs show' has read its outcome")
        created = _create(cluster, namespace, rendered, request.run_id)
        name = rendered.manifest["metadata"]["name"]
        try:
            facts = _submit_facts(cluster, namespace, created, image, rendered, loaded)
            if not request.tracking_env:
                from runner.tracking.mlflow.endpoint.podstore import FACT, STORE_DIR, wanted_for_pod

                if wanted_for_pod(request.tracking_env, request.env):
                    facts[FACT] = STORE_DIR  # the record's import reads it (podstore)
            return KubernetesHandle(request, cluster, loaded, facts)
        except BaseException:
            delete_job(cluster, namespace, name)
            raise

    def refresh(self, record: RunRecord, run_dir: Path) -> RunRecord:
        from backends.kubernetes.recorded import refresh_record

        return refresh_record(record, run_dir)

    def cancel_recorded(self, record: RunRecord, run_dir: Path) -> RunRecord:
        from backends.kubernetes.recorded import cancel_record

        return cancel_record(record, run_dir)

    def replay_config(self, record: RunRecord, run_dir: Path, override: str | None,
                      cwd: Path, notify: Callable[[str], None]) -> str:
        from backends.kubernetes.recorded import replay_config

        return replay_config(record, run_dir, override, cwd, notify)


def check_access(cluster: Cluster, namespace: str,
                 needed: tuple[tuple[str, str, str, str], ...] = NEEDED) -> None:
    """Refuse before creating anything when the kubeconfig user may not follow the run.

    Asks the API server (SelfSubjectAccessReview) about each permission reprun uses; a server
    that does not answer such reviews is not asked again (the run then finds out as it goes).
    """
    from backends.kubernetes.api import request as api_request

    missing = []
    for verb, group, resource, sub in needed:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb,
                                                "group": group, "resource": resource,
                                                "subresource": sub}}}
        try:
            answer = api_request("review access", cluster.authorization
                                 .create_self_subject_access_review, body)
        except BackendError:
            return
        if not answer.get("status", {}).get("allowed"):
            missing.append(f"{verb} {resource}{'/' + sub if sub else ''}")
    if missing:
        raise BackendError(
            f"the kubeconfig user may not {', '.join(missing)} in namespace '{namespace}', "
            "which reprun needs to run and follow a Job; nothing was created",
            hint="ask for these permissions (a Role bound to the user) or use another "
                 "namespace or context")


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
        "job_template_file": TEMPLATE_FILE if loaded.template is not None else None,
        "backend_config": loaded.config.recordable(),
        "poll_seconds": loaded.config.poll_seconds,
        "start_timeout_seconds": loaded.config.start_timeout_seconds,
        "outputs_max_bytes": loaded.config.outputs_max_bytes,
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
        self._outputs = OutputSplitter(request.run_id)
        self.started_at = now()

    def info(self) -> BackendInfo:
        return BackendInfo(name=KubernetesBackend.name)

    def facts(self) -> Mapping[str, Any]:
        return MappingProxyType(dict(self._facts))

    def _sink(self, line: bytes) -> None:
        with self._lock:
            if self._log.closed:
                return  # a stream that outlived the run (it was given up on)
            text = self._outputs.line(line.removesuffix(b"\n"))
            if text is None:
                return
            data = text + b"\n"
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
        namespace, job = self._facts["namespace"], self._facts["job_name"]
        follower = Follower(self.cluster, namespace, job, self._sink, self.loaded.config,
                            self._stop, self.request.notify)
        try:
            try:
                verdict = follower.run()
            except BaseException:
                follower.stop_logs()
                self._delete(job)  # never leave it running unfollowed
                raise
            facts = {**self._facts, **follower.progress.facts()}
            if follower.events.warnings:
                facts["warnings"] = list(follower.events.warnings)
            if verdict is None:
                grace = self.request.grace_period
                self.request.notify(f"stopping: deleting Job {job} (its pod gets {grace:g} s "
                                    "to stop, --grace-period)...")
                self._delete(job, grace)
                follower.finish_logs()
                name = signal.Signals(self._signal or signal.SIGINT).name
                facts["signal"] = name
                self._outcome = Outcome(Status.KILLED, None, self.started_at, now(),
                                        f"stopped by {name}: the Job was deleted",
                                        MappingProxyType(facts))
            else:
                if verdict.cleanup:
                    self._delete(job)
                facts["log_reconnects"] = follower.reconnects()
                self._outcome = Outcome(verdict.status, verdict.exit_code, self.started_at,
                                        now(), verdict.reason, MappingProxyType(facts))
        finally:
            with self._lock:
                self._log.close()
            release_pods(self.cluster, namespace, job)
        self._outcome = self._with_outputs(self._outcome)
        return self._outcome

    def _delete(self, job: str, grace: float | None = None) -> None:
        problem = delete_job(self.cluster, self._facts["namespace"], job, grace)
        if problem:
            self.request.notify(f"warning: {problem}; delete it with kubectl")

    def _with_outputs(self, outcome: Outcome) -> Outcome:
        """Unpack the outputs the log carried; a problem is said and kept in the record."""
        problem = unpack(self._outputs.collected, self.request.output_dir,
                         self.loaded.config.outputs_max_bytes)
        if problem is None:
            return outcome
        self.request.notify(f"warning: {problem}")
        facts = {**outcome.facts, "outputs_problem": problem}
        return Outcome(outcome.status, outcome.exit_code, outcome.started_at, outcome.ended_at,
                       outcome.reason, MappingProxyType(facts))

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle


__all__ = ["KubernetesBackend", "job_name"]
