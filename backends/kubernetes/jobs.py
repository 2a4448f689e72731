"""A Job's end on the cluster: deleted with its pods (bounded wait), and reprun's finalizer taken
off its pods once their outcome has been read. Never raises: what went wrong is returned."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from backends.kubernetes.manifest import OUTCOME_FINALIZER
from runner.errors import BackendError

if TYPE_CHECKING:
    from backends.kubernetes.api import Cluster

GONE_WAIT_S = 60.0


def delete_job(cluster: Cluster, namespace: str, name: str,
               grace: float | None = None) -> str | None:
    """Delete the Job with foreground propagation and wait (bounded) until its pods are gone.

    With ``grace``, its pods are deleted first with that grace period (the pod's own, 30 s by
    default, would apply otherwise). Returns what went wrong (None: all gone), never raises.
    """
    from backends.kubernetes.api import NotFound
    from backends.kubernetes.api import request as api_request

    selector = f"job-name={name}"
    release_pods(cluster, namespace, name)
    try:
        if grace is not None:
            pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod,
                               namespace, label_selector=selector).get("items") or []
            for pod in pods:
                with contextlib.suppress(NotFound):
                    api_request("delete a pod", cluster.core.delete_namespaced_pod,
                                pod["metadata"]["name"], namespace,
                                grace_period_seconds=int(grace))
        api_request(f"delete the Job '{name}'", cluster.batch.delete_namespaced_job, name,
                    namespace, propagation_policy="Foreground")
    except NotFound:
        return None
    except BackendError as exc:
        return f"the Job '{name}' could not be deleted: {exc.render()}"
    deadline = time.monotonic() + GONE_WAIT_S + (grace or 0)
    while time.monotonic() < deadline:
        try:
            pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod,
                               namespace, label_selector=selector)
        except BackendError:
            return None  # deleted; whether its pods are gone already cannot be seen
        if not pods.get("items"):
            return None
        time.sleep(0.5)
    return f"the pods of Job '{name}' were still there after {GONE_WAIT_S:.0f} s"


def release_pods(cluster: Cluster, namespace: str, name: str) -> None:
    """Remove reprun's finalizer from the Job's pods (its outcome has been read); best effort."""
    from backends.kubernetes.api import request as api_request

    try:
        pods = api_request("list the Job's pods", cluster.core.list_namespaced_pod, namespace,
                           label_selector=f"job-name={name}").get("items") or []
        for pod in pods:
            finalizers = pod["metadata"].get("finalizers") or []
            if OUTCOME_FINALIZER not in finalizers:
                continue
            index = finalizers.index(OUTCOME_FINALIZER)
            path = f"/metadata/finalizers/{index}"
            api_request("remove reprun's finalizer from a pod", cluster.core.patch_namespaced_pod,
                        pod["metadata"]["name"], namespace,
                        [{"op": "test", "path": path, "value": OUTCOME_FINALIZER},
                         {"op": "remove", "path": path}])
    except BackendError:
        return
