"""A small fake Kubernetes API server on 127.0.0.1 for contract tests of the kubernetes backend.

The unmodified ``kubernetes`` client talks to it over real HTTP through a kubeconfig file. It does,
as a real apiserver (with a job controller and one kubelet) does in the cases tested:

- objects get ``uid``, ``resourceVersion`` and ``creationTimestamp``; label selectors (``k=v``,
  ``k!=v``, ``k``) are honoured on lists and watches;
- an invalid Job is answered 422 with a ``Status`` naming the field (``metadata.name``,
  ``spec.template.spec.restartPolicy``, containers, image); a duplicate name 409; a missing
  object 404;
- a Job creates a Pod labelled ``job-name`` and ``controller-uid`` with an ownerReference; the
  "kubelet" runs the container's ``command`` as a host process with the container's ``env``
  (Secrets resolved by reference) and reports Running / Succeeded / Failed with the exit code;
  Job conditions follow: ``Complete``, or ``Failed`` with ``BackoffLimitExceeded`` once more pods
  failed than ``backoffLimit`` (a new pod otherwise), or ``DeadlineExceeded`` after
  ``activeDeadlineSeconds``;
- the pod's log: 400 ``... is waiting to start: ContainerCreating`` before the container starts,
  an empty body before the pod is scheduled, ``follow`` / ``timestamps`` supported;
- watches stream ADDED/MODIFIED/DELETED events after ``resourceVersion`` until ``timeoutSeconds``,
  and end with a 410 Gone ERROR event when the test asks (``expire_watches``);
- deletion: ``Foreground`` keeps the Job (with ``deletionTimestamp``) until its pods are gone;
  ``Background`` removes both; no policy orphans the pods, as batch/v1 does through the API;
- Events (``core/v1``, ``fieldSelector`` on ``involvedObject.*``): the job controller's
  ``FailedCreate`` when a pod cannot be created (a ServiceAccount that does not exist, an exceeded
  ResourceQuota), retried with a growing ``count``; the scheduler's ``FailedScheduling`` (a
  PersistentVolumeClaim that does not exist); the kubelet's ``FailedCreatePodSandBox``;
- ``ttlSecondsAfterFinished``: a finished Job is deleted (Foreground, its pods first) that many
  seconds after it ended, as the TTL controller does;
- pod deletion honours the grace period (``gracePeriodSeconds`` of the request, else the pod's
  ``terminationGracePeriodSeconds``, default 30): SIGTERM, then SIGKILL when it runs out; the
  pod stays (with ``deletionTimestamp``) until its process is gone;
- finalizers on pods (copied from the Job's pod template, as the job controller does): a
  deleted pod keeps its status and log, with ``deletionTimestamp``, until a PATCH removes them;
  a Foreground deletion of its Job waits for it;
- RBAC: requests whose (verb, resource) is in ``denied`` are answered 403 with the real message,
  and ``SelfSubjectAccessReview`` says the same;
- test-scripted behaviour (`PodScript`): unschedulable pods, ImagePullBackOff, OOMKilled, a log
  stream that drops, a kubelet error line (no timestamp) in the log after a reconnect, a pod
  sandbox that never comes up, a pod stuck in ContainerCreating, an exceeded quota, and injected
  HTTP faults (429/5xx with Retry-After, 403).

It does not emulate: images (the command runs on the host, in ``workingDir`` when that is a host
directory, so tests point it at the project instead of baking an image; an environment value
under ``/var/tmp/`` is moved to a directory of the pod's own, as a container's filesystem is),
resource accounting, scheduling beyond the script, authentication, RBAC beyond ``denied``,
admission, namespaces as objects, field selectors other than on events, ``sinceTime``, protobuf,
server-side apply, or any resource other than Jobs, Pods, Secrets, Events and access reviews.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TICK_S = 0.05


def stamp(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    base = datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns % 10**9:09d}".rstrip("0").rstrip(".") + "Z"


def status_body(code: int, reason: str, message: str, **details: Any) -> Json:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details, "code": code}


@dataclass
class PodScript:
    """How the next Jobs' pods behave beyond running their command."""

    unschedulable: bool = False
    image_pull_backoff: bool = False
    creating_s: float = 0.3
    oom: bool = False
    drop_log_after_lines: int | None = None
    kubelet_error_on_reconnect: bool = False  # the first log request after a drop: an rpc error
    sandbox_fails: bool = False  # FailedCreatePodSandBox events; the pod never leaves Pending
    quota_exceeded: bool = False  # the job controller's pod creations are refused by a quota
    quota_limit: str = "2Gi"  # the quota's limit (below the 2Gi requested: it can never fit)
    root_ca_not_registered: bool = False  # the kubelet's harmless FailedMount warning at start


@dataclass
class Fault:
    method: str
    path_part: str
    status: int
    count: int = 1
    retry_after: float | None = None


@dataclass
class PodRuntime:
    script: PodScript
    created: float = field(default_factory=time.monotonic)
    proc: subprocess.Popen[bytes] | None = None
    lines: list[tuple[str, bytes]] = field(default_factory=list)
    dropped: bool = False
    kubelet_error_sent: bool = False
    done: bool = False
    kill_at: float | None = None  # while terminating: when the grace period runs out


class FakeKube:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 100
        self.jobs: dict[tuple[str, str], Json] = {}
        self.pods: dict[tuple[str, str], Json] = {}
        self.secrets: dict[tuple[str, str], Json] = {}
        self.runtime: dict[tuple[str, str], PodRuntime] = {}
        self.events: list[tuple[int, str, str, Json]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.faults: list[Fault] = []
        self.script = PodScript()
        self.expire_watches = 0
        self.created_jobs: list[Json] = []
        self.k8s_events: dict[tuple[str, str], Json] = {}
        self.service_accounts: set[tuple[str, str]] = set()  # besides every namespace's default
        self.claims: set[tuple[str, str]] = set()
        self.denied: set[tuple[str, str]] = set()  # (verb, resource), e.g. ("list", "pods")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._controllers, daemon=True)]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeKube:
        for thread in self._threads:
            thread.start()
        return self

    def serve_tls(self) -> None:
        """Serve HTTPS with a self-signed certificate (before `start`): a kubeconfig then needs
        ``insecure-skip-tls-verify``, as with many test clusters."""
        import ssl

        cert, key = self.workdir / "fake-cert.pem", self.workdir / "fake-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = self.url.replace("http://", "https://")

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for rt in self.runtime.values():
                if rt.proc and rt.proc.poll() is None:
                    os.killpg(rt.proc.pid, signal.SIGKILL)

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {
                "server": self.url, **({"insecure-skip-tls-verify": True}
                                       if self.url.startswith("https") else {})}}],
            "users": [{"name": "tester", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester",
                                                      "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))
        return path

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self.lock:
            self.secrets[(namespace, name)] = {"metadata": {"name": name}, "data": {
                k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    # -- state changes (lock held) ---------------------------------------------------------
    def _bump(self, kind: str, event: str, obj: Json) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, event, json.loads(json.dumps(_public(obj)))))
        self.changed.notify_all()

    def _new_meta(self, meta: Json, namespace: str) -> Json:
        meta = dict(meta)
        meta.update(namespace=namespace, uid=str(uuid.uuid4()),
                    creationTimestamp=stamp().split(".")[0] + "Z")
        return meta

    def record_event(self, obj: Json, kind: str, reason: str, message: str,
                     component: str) -> None:
        """A Warning event about ``obj``, counted up when it repeats (as the event recorder)."""
        meta = obj["metadata"]
        key = (meta["namespace"], f"{meta['name']}.{reason}")
        now = stamp().split(".")[0] + "Z"
        event = self.k8s_events.get(key)
        if event is None:
            event = {"apiVersion": "v1", "kind": "Event", "metadata": self._new_meta(
                {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"}, meta["namespace"]),
                "involvedObject": {"kind": kind, "namespace": meta["namespace"],
                                   "name": meta["name"], "uid": meta["uid"],
                                   "apiVersion": "batch/v1" if kind == "Job" else "v1"},
                "reason": reason, "message": message, "type": "Warning", "count": 0,
                "source": {"component": component}, "firstTimestamp": now,
                "reportingComponent": "", "reportingInstance": "", "eventTime": None}
            self.k8s_events[key] = event
        event["count"] += 1
        event["lastTimestamp"] = now
        event["message"] = message
        self._bump("events", "ADDED" if event["count"] == 1 else "MODIFIED", event)

    def create_job(self, namespace: str, job: Json) -> tuple[int, Json]:
        problem = _invalid_job(job)
        name = str(job.get("metadata", {}).get("name", ""))
        if problem:
            fld, why, cause = problem
            return 422, status_body(422, "Invalid", f'Job.batch "{name}" is invalid: {fld}: {why}',
                                    name=name, group="batch", kind="Job",
                                    causes=[{"reason": cause, "message": why, "field": fld}])
        if (namespace, name) in self.jobs:
            return 409, status_body(409, "AlreadyExists", f'jobs.batch "{name}" already exists',
                                    name=name, group="batch", kind="jobs")
        job = json.loads(json.dumps(job))
        job["metadata"] = self._new_meta(job["metadata"], namespace)
        job["status"] = {"startTime": stamp().split(".")[0] + "Z", "active": 1}
        job["_script"] = self.script
        self.jobs[(namespace, name)] = job
        self.created_jobs.append(json.loads(json.dumps(
            {k: v for k, v in job.items() if k != "_script"})))
        self._bump("jobs", "ADDED", job)
        self._create_pod(namespace, job)
        return 201, job

    def _create_pod(self, namespace: str, job: Json) -> None:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        refused = self._pod_refused(namespace, name, template["spec"], job["_script"])
        if refused is not None:
            job["_retry_at"] = time.monotonic() + 0.5
            self.record_event(job, "Job", "FailedCreate", f"Error creating: {refused}",
                              "job-controller")
            return
        job.pop("_retry_at", None)
        labels = {**template.get("metadata", {}).get("labels", {}),
                  "job-name": job["metadata"]["name"], "controller-uid": job["metadata"]["uid"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"]}
        copied = {k: json.loads(json.dumps(v)) for k, v in template.get("metadata", {}).items()
                  if k in ("annotations", "finalizers")}  # as the job controller copies them
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": self._new_meta({**copied, "name": name, "labels": labels,
                                           "ownerReferences": [{
                   "apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                   "uid": job["metadata"]["uid"], "controller": True,
                   "blockOwnerDeletion": True}]}, namespace),
               "spec": json.loads(json.dumps(template["spec"])),
               "status": {"phase": "Pending"}}
        self.pods[(namespace, name)] = pod
        self.runtime[(namespace, name)] = PodRuntime(job["_script"])
        self._bump("pods", "ADDED", pod)

    def _pod_refused(self, namespace: str, name: str, spec: Json,
                     script: PodScript) -> str | None:
        """Why the API server refuses the job controller's pod (admission), or None."""
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if account != "default" and (namespace, account) not in self.service_accounts:
            return (f'pods "{name}" is forbidden: error looking up service account '
                    f'{namespace}/{account}: serviceaccount "{account}" not found')
        if script.quota_exceeded:
            return (f'pods "{name}" is forbidden: exceeded quota: compute, requested: '
                    f'limits.memory=2Gi, used: limits.memory=1Gi, limited: limits.memory='
                    f'{script.quota_limit}')
        return None

    def _delete_pod(self, key: tuple[str, str], grace: float | None = 0) -> None:
        """Delete a pod: at once (grace 0), else SIGTERM now and SIGKILL when grace runs out
        (None: the pod's terminationGracePeriodSeconds, 30 by default)."""
        pod, rt = self.pods.get(key), self.runtime.get(key)
        if pod is None:
            return
        if grace is None:
            grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        alive = rt is not None and rt.proc is not None and rt.proc.poll() is None
        if grace > 0 and alive and rt is not None and rt.proc is not None:
            if rt.kill_at is None:
                pod["metadata"]["deletionTimestamp"] = stamp().split(".")[0] + "Z"
                pod["metadata"]["deletionGracePeriodSeconds"] = int(grace)
                rt.kill_at = time.monotonic() + grace
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rt.proc.pid, signal.SIGTERM)
                self._bump("pods", "MODIFIED", pod)
            return
        if alive and rt is not None and rt.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rt.proc.pid, signal.SIGKILL)
        if pod["metadata"].get("finalizers"):  # kept, status and log, until they are removed
            if not pod["metadata"].get("deletionTimestamp"):
                pod["metadata"]["deletionTimestamp"] = stamp().split(".")[0] + "Z"
                self._bump("pods", "MODIFIED", pod)
            return
        del self.pods[key]
        self._bump("pods", "DELETED", pod)

    def patch_pod(self, namespace: str, name: str, ops: Any) -> tuple[int, Json]:
        """A JSON patch (``remove`` and ``test`` of metadata.finalizers entries) or a merge."""
        pod = self.pods.get((namespace, name))
        if pod is None:
            return 404, status_body(404, "NotFound", f'pods "{name}" not found', name=name)
        finalizers = list(pod["metadata"].get("finalizers") or [])
        if isinstance(ops, dict):
            finalizers = list((ops.get("metadata") or {}).get("finalizers") or [])
        else:
            for op in ops:
                index = int(str(op.get("path", "")).rsplit("/", 1)[-1])
                if op.get("op") == "test" and (index >= len(finalizers)
                                               or finalizers[index] != op.get("value")):
                    return 422, status_body(422, "Invalid", "the test operation failed")
                if op.get("op") == "remove":
                    if index >= len(finalizers):
                        return 422, status_body(422, "Invalid", "no such finalizer")
                    del finalizers[index]
        pod["metadata"]["finalizers"] = finalizers
        if not finalizers:
            del pod["metadata"]["finalizers"]
        self._bump("pods", "MODIFIED", pod)
        return 200, _public(pod)

    def delete_job(self, namespace: str, name: str, policy: str | None) -> tuple[int, Json]:
        job = self.jobs.get((namespace, name))
        if job is None:
            return 404, status_body(404, "NotFound", f'jobs.batch "{name}" not found',
                                    name=name, group="batch", kind="jobs")
        owned = [k for k, p in self.pods.items() if k[0] == namespace
                 and p["metadata"]["labels"].get("controller-uid") == job["metadata"]["uid"]]
        if policy == "Foreground":
            job["metadata"]["deletionTimestamp"] = stamp().split(".")[0] + "Z"
            job["metadata"]["finalizers"] = ["foregroundDeletion"]
            self._bump("jobs", "MODIFIED", job)
            return 200, job
        if policy == "Background":
            for key in owned:
                self._delete_pod(key, None)
        else:
            for key in owned:
                self.pods[key]["metadata"]["ownerReferences"] = []
        del self.jobs[(namespace, name)]
        self._bump("jobs", "DELETED", job)
        return 200, {"kind": "Status", "status": "Success"}

    # -- controllers -----------------------------------------------------------------------
    def _controllers(self) -> None:
        while not self._stop.wait(TICK_S):
            with self.lock:
                for key in list(self.pods):
                    self._kubelet(key)
                for key in list(self.jobs):
                    self._job_controller(key)
                    self._ttl_controller(key)

    def _ttl_controller(self, key: tuple[str, str]) -> None:
        job = self.jobs.get(key)
        ttl = job["spec"].get("ttlSecondsAfterFinished") if job else None
        finished = job and job.get("_finished_at")
        if job is None or ttl is None or not finished or job["metadata"].get(
                "deletionTimestamp"):
            return
        if time.monotonic() - finished >= ttl:
            self.delete_job(key[0], key[1], "Foreground")

    def _kubelet(self, key: tuple[str, str]) -> None:
        pod, rt = self.pods[key], self.runtime[key]
        status, script = pod["status"], rt.script
        if pod["metadata"].get("deletionTimestamp"):
            self._terminating(key, pod, rt)
            return
        if "nodeName" not in pod["spec"]:
            claim = self._missing_claim(key[0], pod)
            if claim is not None:
                message = f'0/1 nodes are available: 1 persistentvolumeclaim "{claim}" not found.'
                if not status.get("conditions"):
                    status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                             "reason": "Unschedulable", "message": message}]
                    self._bump("pods", "MODIFIED", pod)
                    self.record_event(pod, "Pod", "FailedScheduling", message,
                                      "default-scheduler")
                return
            if script.unschedulable:
                if not status.get("conditions"):
                    status["conditions"] = [{
                        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]
                    self._bump("pods", "MODIFIED", pod)
                return
            pod["spec"]["nodeName"] = "fake-node-1"
            status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            self._set_state(pod, {"waiting": {"reason": "ContainerCreating"}})
            self._bump("pods", "MODIFIED", pod)
            if script.root_ca_not_registered:
                self.record_event(pod, "Pod", "FailedMount",
                                  'MountVolume.SetUp failed for volume "kube-api-access-x1y2z" : '
                                  f'object "{key[0]}"/"kube-root-ca.crt" not registered',
                                  "kubelet")
            return
        state = status["containerStatuses"][0]["state"]
        if script.sandbox_fails:
            if time.monotonic() - rt.created >= script.creating_s:
                rt.created = time.monotonic() + 0.5  # the kubelet retries, with a new event
                self.record_event(pod, "Pod", "FailedCreatePodSandBox",
                                  'Failed to create pod sandbox: rpc error: code = Unknown desc '
                                  '= failed to setup network for sandbox "0a1b2c": plugin '
                                  'type="calico" failed (add): no route to host', "kubelet")
            return
        if "waiting" in state and time.monotonic() - rt.created >= script.creating_s:
            self._start(key, pod, rt)
        elif "running" in state and rt.proc is not None and rt.proc.poll() is not None and rt.done:
            code = rt.proc.returncode
            code = 128 - code if code < 0 else code
            reason = "Completed" if code == 0 else "Error"
            if script.oom:
                code, reason = 137, "OOMKilled"
            started = state["running"].get("startedAt")
            self._set_state(pod, {"terminated": {"exitCode": code, "reason": reason,
                                                 "startedAt": started,
                                                 "finishedAt": stamp().split(".")[0] + "Z"}})
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            self._bump("pods", "MODIFIED", pod)

    def _terminating(self, key: tuple[str, str], pod: Json, rt: PodRuntime) -> None:
        proc = rt.proc
        alive = proc is not None and proc.poll() is None
        if alive and proc is not None and rt.kill_at is not None and (
                time.monotonic() >= rt.kill_at):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        elif not alive and not pod["metadata"].get("finalizers"):
            self._delete_pod(key, 0)

    def _missing_claim(self, namespace: str, pod: Json) -> str | None:
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (namespace, claim) not in self.claims:
                return str(claim)
        return None

    def _set_state(self, pod: Json, state: Json) -> None:
        name = pod["spec"]["containers"][0]["name"]
        image = pod["spec"]["containers"][0]["image"]
        pod["status"]["containerStatuses"] = [{
            "name": name, "state": state, "image": image, "imageID": image,
            "ready": "running" in state, "restartCount": 0, "started": "running" in state}]

    def _start(self, key: tuple[str, str], pod: Json, rt: PodRuntime) -> None:
        container = pod["spec"]["containers"][0]
        if rt.script.image_pull_backoff:
            if pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] != (
                    "ImagePullBackOff"):
                self._set_state(pod, {"waiting": {"reason": "ImagePullBackOff", "message":
                                      f'Back-off pulling image "{container["image"]}"'}})
                self._bump("pods", "MODIFIED", pod)
            return
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOSTNAME": key[1]}
        private = self.workdir / f"{key[1]}-root"  # the container's own /var/tmp
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                value = str(item.get("value", ""))
                if value.startswith("/var/tmp/"):
                    value = str(private) + value
                elif value.startswith("file:/var/tmp/"):  # a file: URI into it
                    value = "file:" + str(private) + value[5:]
                env[item["name"]] = value
                continue
            secret = self.secrets.get((key[0], ref["name"]))
            if secret is None or ref["key"] not in secret["data"]:
                what = f'secret "{ref["name"]}" not found' if secret is None else (
                    f"couldn't find key {ref['key']} in Secret {key[0]}/{ref['name']}")
                self._set_state(pod, {"waiting": {"reason": "CreateContainerConfigError",
                                                  "message": what}})
                self._bump("pods", "MODIFIED", pod)
                return
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        workdir = container.get("workingDir")
        cwd = Path(workdir) if workdir and Path(workdir).is_dir() else Path(
            tempfile.mkdtemp(prefix=f"{key[1]}-", dir=self.workdir))
        rt.proc = subprocess.Popen(container["command"] + container.get("args", []), env=env,
                                   cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        threading.Thread(target=self._pump, args=(rt,), daemon=True).start()
        self._set_state(pod, {"running": {"startedAt": stamp().split(".")[0] + "Z"}})
        pod["status"]["phase"] = "Running"
        self._bump("pods", "MODIFIED", pod)

    def _pump(self, rt: PodRuntime) -> None:
        assert rt.proc is not None and rt.proc.stdout is not None
        for line in rt.proc.stdout:
            with self.lock:
                rt.lines.append((stamp(), line.rstrip(b"\n")))
                self.changed.notify_all()
        rt.proc.wait()
        with self.lock:
            rt.done = True
            self.changed.notify_all()

    def _job_controller(self, key: tuple[str, str]) -> None:
        job = self.jobs[key]
        owned = {k: p for k, p in self.pods.items() if k[0] == key[0]
                 and p["metadata"]["labels"].get("controller-uid") == job["metadata"]["uid"]}
        if job["metadata"].get("deletionTimestamp"):
            for pod_key in owned:
                self._delete_pod(pod_key, None)
            if not any(k in self.pods for k in owned):
                del self.jobs[key]
                self._bump("jobs", "DELETED", job)
            return
        status = job["status"]
        if status.get("conditions"):
            return
        if not owned and job.get("_retry_at") and time.monotonic() >= job["_retry_at"]:
            self._create_pod(key[0], job)
            return
        phases = [p["status"]["phase"] for p in owned.values()]
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        if deadline and (datetime.now(timezone.utc) - started).total_seconds() > deadline:
            for pod_key in owned:
                self._delete_pod(pod_key)
            self._finish(job, "Failed", "DeadlineExceeded",
                         "Job was active longer than specified deadline")
        elif "Succeeded" in phases:
            status["succeeded"] = 1
            status["completionTime"] = stamp().split(".")[0] + "Z"
            self._finish(job, "Complete", None, None)
        elif phases.count("Failed") > job["spec"].get("backoffLimit", 6):
            status["failed"] = phases.count("Failed")
            self._finish(job, "Failed", "BackoffLimitExceeded",
                         "Job has reached the specified backoff limit")
        elif phases and all(p == "Failed" for p in phases):
            self._create_pod(key[0], job)

    def _finish(self, job: Json, kind: str, reason: str | None, message: str | None) -> None:
        job["_finished_at"] = time.monotonic()
        cond: Json = {"type": kind, "status": "True",
                      "lastTransitionTime": stamp().split(".")[0] + "Z"}
        if reason:
            cond.update(reason=reason, message=message)
        job["status"]["conditions"] = [cond]
        job["status"]["active"] = 0
        self._bump("jobs", "MODIFIED", job)


def _invalid_job(job: Json) -> tuple[str, str, str] | None:
    name = str(job.get("metadata", {}).get("name", ""))
    if not name:
        return "metadata.name", "Required value: name or generateName is required", \
            "FieldValueRequired"
    if len(name) > 63 or not DNS1123.match(name):
        return "metadata.name", f'Invalid value: "{name}": must be a valid DNS-1123 label', \
            "FieldValueInvalid"
    pod = job.get("spec", {}).get("template", {}).get("spec", {})
    policy = pod.get("restartPolicy")
    if policy is None:
        return "spec.template.spec.restartPolicy", \
            'Required value: valid values: "OnFailure", "Never"', "FieldValueRequired"
    if policy not in ("Never", "OnFailure"):
        return "spec.template.spec.restartPolicy", \
            f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"', \
            "FieldValueNotSupported"
    containers = pod.get("containers") or []
    if not containers:
        return "spec.template.spec.containers", "Required value", "FieldValueRequired"
    for index, container in enumerate(containers):
        if not container.get("image"):
            return f"spec.template.spec.containers[{index}].image", "Required value", \
                "FieldValueRequired"
    return None


def matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


ROUTES = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>jobs|pods|secrets|events)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)
ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def verb_of(method: str, name: str | None, query: Json) -> str:
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    return {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(
        method, method.lower())


def forbidden_message(verb: str, resource: str, namespace: str) -> str:
    kind, _, sub = resource.partition("/")
    group = "batch" if kind == "jobs" else ""
    what = f"{kind}.batch" if group else kind
    full = f'resource "{kind}" in API group "{group}"'
    if sub:
        full = f'resource "{kind}/{sub}" in API group "{group}"'
    return (f'{what} is forbidden: User "tester" cannot {verb} {full} in the namespace '
            f'"{namespace}"')


def field_matches(obj: Json, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        node: Any = obj
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node) != value:
            return False
    return True


def _handler(fake: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _send(self, code: int, body: Json, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _begin_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            with fake.lock:
                for fault in fake.faults:
                    if fault.count > 0 and fault.method == method and \
                            fault.path_part in parts.path:
                        fault.count -= 1
                        fake.requests.append((method, parts.path, fault.status))
                        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after \
                            is not None else None
                        reason = {403: "Forbidden", 429: "TooManyRequests"}.get(
                            fault.status, "InternalError")
                        message = "try again later"
                        matched = ROUTES.match(parts.path)
                        if fault.status == 403 and matched:
                            message = forbidden_message(
                                verb_of(method, matched["name"], query), matched["kind"],
                                matched["ns"])
                        self._send(fault.status, status_body(fault.status, reason, message),
                                   extra)
                        return
                fake.requests.append((method, parts.path, 0))
            if parts.path == ACCESS_REVIEW and method == "POST":
                self._access_review(body)
                return
            route = ROUTES.match(parts.path)
            if route is not None:
                resource = route["kind"] + ("/log" if route["log"] else "")
                verb = verb_of(method, route["name"], query)
                if (verb, resource) in fake.denied:
                    self._send(403, status_body(403, "Forbidden", forbidden_message(
                        verb, resource, route["ns"])))
                    return
            if route is None:
                self._send(404, status_body(404, "NotFound", "the server could not find the "
                                                              "requested resource"))
                return
            ns, kind, name = route["ns"], route["kind"], route["name"]
            if route["log"]:
                self._log(ns, str(name), query)
            elif query.get("watch") in ("true", "1"):
                self._watch(kind, ns, query)
            else:
                self._crud(method, ns, kind, name, query, body)

        def _access_review(self, body: Json) -> None:
            attrs = body.get("spec", {}).get("resourceAttributes", {})
            resource = attrs.get("resource", "")
            if attrs.get("subresource"):
                resource += "/" + attrs["subresource"]
            allowed = (attrs.get("verb"), resource) not in fake.denied
            answer = {**body, "status": {"allowed": allowed}}
            if not allowed:
                answer["status"]["reason"] = "no RBAC policy matched"
            self._send(201, answer)

        def _crud(self, method: str, ns: str, kind: str, name: str | None, query: Json,
                  body: Json) -> None:
            with fake.lock:
                events = {k: v for k, v in fake.k8s_events.items()}
                store = {"jobs": fake.jobs, "pods": fake.pods, "secrets": fake.secrets,
                         "events": events}[kind]
                if method == "POST" and kind == "jobs":
                    self._send(*fake.create_job(ns, body))
                elif method == "POST" and kind == "secrets":
                    fake.secrets[(ns, body["metadata"]["name"])] = body
                    self._send(201, body)
                elif method == "DELETE" and kind == "jobs" and name:
                    policy = query.get("propagationPolicy") or body.get("propagationPolicy")
                    self._send(*fake.delete_job(ns, name, policy))
                elif method == "DELETE" and kind == "pods" and name:
                    pod = fake.pods.get((ns, name))
                    if pod is None:
                        self._send(404, status_body(404, "NotFound", f'pods "{name}" not found',
                                                    name=name, kind="pods"))
                        return
                    grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
                    fake._delete_pod((ns, name), None if grace is None else float(grace))
                    self._send(200, _public(pod))
                elif method == "PATCH" and kind == "pods" and name:
                    self._send(*fake.patch_pod(ns, name, body))
                elif method == "GET" and name:
                    obj = store.get((ns, name))
                    if obj is None:
                        self._send(404, status_body(404, "NotFound",
                                                    f'{kind} "{name}" not found', name=name))
                    else:
                        self._send(200, _public(obj))
                elif method == "GET":
                    items = [_public(o) for (n, _), o in store.items() if n == ns and matches(
                        o["metadata"].get("labels", {}), query.get("labelSelector"))
                        and field_matches(o, query.get("fieldSelector"))]
                    self._send(200, {"kind": "List", "items": items,
                                     "metadata": {"resourceVersion": str(fake.rv)}})
                else:
                    self._send(405, status_body(405, "MethodNotAllowed", "not supported"))

        def _watch(self, kind: str, ns: str, query: Json) -> None:
            self._begin_stream("application/json")
            with fake.lock:
                if fake.expire_watches > 0:
                    fake.expire_watches -= 1
                    event = {"type": "ERROR", "object": status_body(
                        410, "Expired", "too old resource version")}
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                    return
            since = int(query.get("resourceVersion") or fake.rv)
            deadline = time.monotonic() + float(query.get("timeoutSeconds", 30))
            with fake.lock:
                while time.monotonic() < deadline:
                    for rv, what, event_type, obj in fake.events:
                        if rv > since and what == kind and obj["metadata"]["namespace"] == ns \
                                and matches(obj["metadata"].get("labels", {}),
                                            query.get("labelSelector")):
                            line = json.dumps({"type": event_type, "object": _public(obj)})
                            self.wfile.write(line.encode() + b"\n")
                            self.wfile.flush()
                            since = rv
                    fake.changed.wait(max(0.0, min(0.5, deadline - time.monotonic())))

        def _log(self, ns: str, name: str, query: Json) -> None:
            with fake.lock:
                pod, rt = fake.pods.get((ns, name)), fake.runtime.get((ns, name))
                if pod is None or rt is None:
                    self._send(404, status_body(404, "NotFound", f'pods "{name}" not found'))
                    return
                if "nodeName" not in pod["spec"]:
                    self._begin_stream("text/plain")
                    return
                state = pod["status"]["containerStatuses"][0]["state"]
                if "waiting" in state:
                    container = pod["spec"]["containers"][0]["name"]
                    message = (f'container "{container}" in pod "{name}" is waiting to start: '
                               f'{state["waiting"]["reason"]}')
                    self._send(400, status_body(400, "BadRequest", message))
                    return
            self._begin_stream("text/plain")
            if rt.dropped and rt.script.kubelet_error_on_reconnect and not rt.kubelet_error_sent:
                rt.kubelet_error_sent = True  # what a kubelet writes when it lost the container
                self.wfile.write(b'rpc error: code = NotFound desc = an error occurred when try '
                                 b'to find container "4f6c2d": not found\n')
                return
            follow = query.get("follow") in ("true", "1")
            stamps = query.get("timestamps") in ("true", "1")
            sent = 0
            with fake.lock:
                while True:
                    for when, line in rt.lines[sent:]:
                        self.wfile.write((f"{when} ".encode() if stamps else b"") + line + b"\n")
                        sent += 1
                        if follow and rt.script.drop_log_after_lines == sent and not rt.dropped:
                            rt.dropped = True
                            return
                    self.wfile.flush()
                    if not follow or rt.done or (ns, name) not in fake.pods:
                        return
                    fake.changed.wait(0.5)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

    return Handler


def _public(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


@contextlib.contextmanager
def running(workdir: Path, tls: bool = False) -> Any:
    fake = FakeKube(workdir)
    if tls:
        fake.serve_tls()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
