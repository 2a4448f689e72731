"""The environment layer built where it runs: a build Job in the cluster, in the base image.

The Job runs `backends.oci.podbuild` with the base's ``python3`` (the image pinned by digest, so
the layer is made for the nodes' platform and the image's Python, whatever this machine is). It
installs the lock and pushes the layer to the target repository as ``reprun-env-<key>``; reprun
follows it until it ends and then finds the layer in the registry like any cached one. A builder
whose image cannot be pulled, that runs out of memory, or that exits non-zero ends the run in one
line (with the last line of its log; the whole log is saved as ``env-build.log`` beside the
record). The Job is deleted when it ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.kubernetes.config import KubernetesConfig
from backends.kubernetes.verdict import WAITING_FAILURES
from backends.oci.manifest import BaseImage, Platform
from backends.oci.reference import is_loopback
from runner.envs.base import Lock
from runner.errors import BackendError

if TYPE_CHECKING:
    from backends.kubernetes.api import Cluster

BUILD_LOG = "env-build.log"
LABEL = "reprun.dev/env-build"
POLL_S = 0.5


def build_job(lock: Lock, base: BaseImage, platform: Platform, registry_host: str,
              repository: str, tag: str, pip_args: list[str], config: KubernetesConfig,
              insecure: tuple[str, ...]) -> dict[str, Any]:
    """The build Job's manifest (the registry login, if any, comes from a Secret by reference)."""
    scheme = "http" if is_loopback(registry_host) or registry_host in insecure else "https"
    from backends.oci.podbuild import script

    env: list[dict[str, Any]] = [
        {"name": "REPRUN_LOCK", "value": lock.content},
        {"name": "REPRUN_PIP_ARGS", "value": json.dumps(pip_args)},
        {"name": "REPRUN_REGISTRY", "value": f"{scheme}://{registry_host}"},
        {"name": "REPRUN_REPOSITORY", "value": repository},
        {"name": "REPRUN_TAG", "value": tag},
        {"name": "REPRUN_PLATFORM", "value": str(platform)},
        {"name": "REPRUN_SITE", "value": "/opt/reprun/site-packages"},
        {"name": "REPRUN_LABELS", "value": json.dumps({"reprun.lock-sha256": lock.sha256,
                                                       "reprun.base": base.digest})},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if config.registry_login is not None:
        ref = config.registry_login
        env.append({"name": "REPRUN_REGISTRY_LOGIN", "valueFrom": {"secretKeyRef": {
            "name": ref.secret, "key": ref.key}}})
    container: dict[str, Any] = {
        "name": "env-build", "image": f"{base.ref.name}@{base.digest}",
        "command": ["python3", "-c", script()], "env": env,
    }
    memory = config.resources.memory
    if memory:
        container["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}
    name = f"reprun-env-{hashlib.sha256(tag.encode()).hexdigest()[:8]}-{int(time.time())}"
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in config.image_pull_secrets]
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(config.node_selector)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {LABEL: tag[-20:]}},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {LABEL: tag[-20:]}}, "spec": pod_spec}}}


def run_build_job(manifest: Mapping[str, Any], config: KubernetesConfig, run_dir: Path | None,
                  notify: Callable[[str], None]) -> None:
    """Create the Job, follow it to its end, delete it; one-line errors when it fails."""
    from backends.kubernetes.api import connect
    from backends.kubernetes.api import request as api_request

    cluster = connect(config.kube_context)
    namespace = config.namespace or cluster.default_namespace
    name = manifest["metadata"]["name"]
    api_request(f"create the environment build Job in namespace '{namespace}'",
                cluster.batch.create_namespaced_job, namespace, dict(manifest))
    notify(f"building the environment layer in the cluster (Job {namespace}/{name})")
    try:
        _follow(cluster, namespace, name, config, run_dir)
    finally:
        with contextlib.suppress(BackendError):
            api_request("delete the environment build Job", cluster.batch.delete_namespaced_job,
                        name, namespace, propagation_policy="Background")


def _follow(cluster: Cluster, namespace: str, name: str, config: KubernetesConfig,
            run_dir: Path | None) -> None:
    from backends.kubernetes.api import request as api_request

    deadline = time.monotonic() + config.start_timeout_seconds + 3600
    while time.monotonic() < deadline:
        job = api_request("read the environment build Job", cluster.batch.read_namespaced_job,
                          name, namespace)
        pods = api_request("list the environment build pod", cluster.core.list_namespaced_pod,
                           namespace, label_selector=f"job-name={name}").get("items") or []
        pod = pods[0] if pods else None
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        state = (statuses[0].get("state") or {}) if statuses else {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in WAITING_FAILURES:
            raise BackendError(
                f"the environment build Job {name} could not start: {waiting['reason']} "
                f"({waiting.get('message') or 'no message'})",
                hint="check that the nodes can pull the base image (imagePullSecrets in the "
                     "backend config)")
        ended = state.get("terminated") or {}
        conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions")
                      or []}
        if conditions.get("Complete", {}).get("status") == "True":
            return
        if ended.get("reason") == "OOMKilled":
            raise BackendError(f"the environment build Job {name} ran out of memory "
                               "(OOMKilled)", hint="raise resources.memory in the backend "
                                                   "config")
        if (ended and ended.get("exitCode") not in (None, 0)) or (
                conditions.get("Failed", {}).get("status") == "True"):
            last = _log(cluster, namespace, (pod or {}).get("metadata", {}).get("name"), run_dir)
            saved = f"; its log is {run_dir / BUILD_LOG}" if run_dir is not None else ""
            raise BackendError(
                f"the environment build Job {name} failed (exit code {ended.get('exitCode')}):"
                f" {last}", hint=f"the lock could not be installed in the base image{saved}")
        time.sleep(min(POLL_S, config.poll_seconds))
    raise BackendError(f"the environment build Job {name} did not end in time")


def _log(cluster: Cluster, namespace: str, pod: str | None, run_dir: Path | None) -> str:
    """The pod's log saved beside the record; its last non-empty line."""
    if not pod:
        return "no pod"
    from backends.kubernetes.api import call

    def once() -> bytes:
        resp: Any = cluster.core.read_namespaced_pod_log(pod, namespace,
                                                         _preload_content=False)
        try:
            return bytes(resp.data or b"")
        finally:
            resp.release_conn()

    try:
        text = call("read the environment build log", once).decode("utf-8", "replace")
    except BackendError:
        return "its log could not be read"
    if run_dir is not None:
        (run_dir / BUILD_LOG).write_text(text, encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["its log is empty"])[-1][:300]
