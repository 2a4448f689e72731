"""Follow a Job: watch its pods, stream their logs (reconnecting), and say how the run ended.

`interpret` maps the Job's conditions and its pods' states to a run status with a reason; it is
pure and works on the JSON the API returns, so the same code completes detached records.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from backends.kubernetes.api import TRANSIENT, Cluster, NotFound, api_error, request
from runner.extras import needs_extra
from runner.frozen import frozen

with needs_extra("kubernetes", "Kubernetes runs"):
    import urllib3
    from kubernetes.client.exceptions import ApiException
from runner.record.types import Status

Sink = Callable[[bytes], None]
Json = dict[str, Any]
WAITING_FAILURES = frozenset({
    "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError",
})
LOG_DRAIN_S = 15.0


@frozen
class Verdict:
    status: Status
    exit_code: int | None
    reason: str | None
    cleanup: bool = False  # the Job would go on retrying: delete it


def _container(pod: Json) -> Json:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _terminated(pod: Json) -> Json | None:
    state = _container(pod).get("state") or {}
    return state.get("terminated")


def _condition(obj: Json, kind: str) -> Json | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _newest(pods: list[Json]) -> Json | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)


def interpret(job: Json | None, pods: list[Json], unschedulable_s: float | None,
              timeout_s: float) -> Verdict | None:
    """How the run ended, or None while it goes on."""
    if job is None:
        return Verdict(Status.KILLED, None, "the Job was deleted")
    pod = _newest(pods)
    ended = _terminated(pod) if pod else None
    code = int(ended["exitCode"]) if ended and ended.get("exitCode") is not None else None
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return Verdict(Status.FINISHED, 0 if code is None else code, None)
    failed = _condition(job, "Failed")
    if failed:
        why = failed.get("reason") or "Failed"
        detail = failed.get("message") or ""
        if ended and ended.get("reason") == "OOMKilled":
            why, detail = "OOMKilled", f"the container ran out of memory ({why})"
        elif code is not None:
            detail = f"command exited with code {code}" + (f" ({why})" if why else "")
            why = ended.get("reason") or why if ended else why
        return Verdict(Status.FAILED, code, f"{why}: {detail}".rstrip(": "))
    for candidate in pods:
        waiting = (_container(candidate).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in WAITING_FAILURES:
            message = waiting.get("message") or ""
            return Verdict(Status.FAILED, None, f"{waiting['reason']}: {message}".rstrip(": "),
                           cleanup=True)
    if unschedulable_s is not None and unschedulable_s >= timeout_s and pod is not None:
        message = unschedulable_message(pod) or "no node fits the pod"
        return Verdict(Status.FAILED, None,
                       f"Unschedulable: {message} (for {unschedulable_s:.0f} s)", cleanup=True)
    return None


def unschedulable_message(pod: Json) -> str | None:
    """The scheduler's message when the pod cannot be placed, else None."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "unschedulable")
    return None


def _stamp_key(stamp: str) -> str:
    """An RFC 3339 (nano) UTC time as text that sorts in time order (fractions padded)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def phase_of(pod: Json) -> tuple[str, str]:
    """The pod's phase (with the container's waiting reason) and when it began, as known."""
    status = pod.get("status", {})
    phase = status.get("phase") or "Pending"
    state = _container(pod).get("state") or {}
    at = pod["metadata"].get("creationTimestamp")
    if "waiting" in state and state["waiting"].get("reason"):
        phase = f"{phase} ({state['waiting']['reason']})"
    elif "running" in state:
        at = state["running"].get("startedAt") or at
    elif "terminated" in state:
        at = state["terminated"].get("finishedAt") or at
    elif unschedulable_message(pod):
        phase = f"{phase} (Unschedulable)"
    return phase, at or datetime.now(timezone.utc).isoformat()


@dataclass
class Progress:
    """What has been seen of the Job's pods, kept in the record."""

    phases: list[Json] = field(default_factory=list)
    node_name: str | None = None
    pod_name: str | None = None
    watch_restarts: int = 0

    def observe(self, pods: list[Json]) -> None:
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            name = pod["metadata"]["name"]
            phase, at = phase_of(pod)
            last = next((p for p in reversed(self.phases) if p["pod"] == name), None)
            if last is None or last["phase"] != phase:
                self.phases.append({"pod": name, "phase": phase, "at": at})
            self.pod_name = name
            self.node_name = pod.get("spec", {}).get("nodeName") or self.node_name

    def facts(self) -> Json:
        facts: Json = {"pod_phases": list(self.phases)}
        if self.pod_name:
            facts["pod_name"] = self.pod_name
        if self.node_name:
            facts["node_name"] = self.node_name
        if self.watch_restarts:
            facts["watch_restarts"] = self.watch_restarts
        return facts


class LogStreamer(threading.Thread):
    """Follows one pod's log into ``sink``; reconnects (without repeating lines) until it ends."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, sink: Sink,
                 stop: threading.Event, poll_s: float) -> None:
        super().__init__(name=f"logs-{pod}", daemon=True)
        self.cluster, self.namespace, self.pod, self.sink = cluster, namespace, pod, sink
        self.stop, self.poll_s = stop, poll_s
        self.last_stamp = ""
        self.delivered_at_last = 0
        self.in_connection = 0
        self.reconnects = 0

    def run(self) -> None:
        follow = True
        while not self.stop.is_set():
            try:
                self._follow(follow)
            except ApiException as exc:
                if exc.status == 404:
                    return
            except (urllib3.exceptions.HTTPError, OSError):
                pass
            if not follow:
                return
            if self._container_ended():
                follow = False  # one last read for what a dropped stream did not deliver
                continue
            if self.stop.wait(self.poll_s):
                return
            self.reconnects += 1

    def _follow(self, follow: bool) -> None:
        self.in_connection = 0
        resp: Any = self.cluster.core.read_namespaced_pod_log(
            self.pod, self.namespace, follow=follow, timestamps=True, _preload_content=False,
            _request_timeout=(10, 600),
        )
        try:
            if resp.status != 200:
                raise ApiException(http_resp=resp)
            pending = b""
            for chunk in resp.stream(8192):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self._line(line)
                if self.stop.is_set():
                    return
            if pending:
                self._line(pending)
        finally:
            resp.release_conn()

    def _line(self, raw: bytes) -> None:
        """Deliver a timestamped line unless an earlier connection delivered it already."""
        stamp, _, text = raw.partition(b" ")
        key = _stamp_key(stamp.decode("ascii", "replace"))
        if key < self.last_stamp:
            return
        if key == self.last_stamp:
            self.in_connection += 1
            if self.in_connection <= self.delivered_at_last:
                return
            self.delivered_at_last += 1
        else:
            self.last_stamp, self.delivered_at_last, self.in_connection = key, 1, 1
        self.sink(text + b"\n")

    def _container_ended(self) -> bool:
        try:
            pod = request("read the pod", self.cluster.core.read_namespaced_pod, self.pod,
                          self.namespace)
        except NotFound:
            return True
        return _terminated(pod) is not None


class Follower:
    """Watches a Job until it ends (or ``stop`` is set), streaming its pods' logs."""

    def __init__(self, cluster: Cluster, namespace: str, job_name: str, sink: Sink,
                 poll_s: float, unschedulable_timeout_s: float, stop: threading.Event) -> None:
        self.cluster, self.namespace, self.job_name, self.sink = cluster, namespace, job_name, sink
        self.poll_s, self.timeout_s, self.stop = poll_s, unschedulable_timeout_s, stop
        self.progress = Progress()
        self.selector = f"job-name={job_name}"
        self.streamers: dict[str, LogStreamer] = {}
        self._unschedulable_since: float | None = None
        self._log_stop = threading.Event()

    def run(self) -> Verdict | None:
        """The verdict, or None when ``stop`` was set first."""
        while not self.stop.is_set():
            job = self._job()
            pods, version = self._pods()
            self.progress.observe(pods)
            self._stream_logs(pods)
            verdict = interpret(job, pods, self._unschedulable_for(pods), self.timeout_s)
            if verdict is not None:
                if verdict.cleanup:
                    self._log_stop.set()  # the container never ran: nothing more will come
                self.finish_logs()
                return verdict
            self._pause(version)
        return None

    def finish_logs(self) -> None:
        """Let the log streams drain what is left, then stop them."""
        deadline = time.monotonic() + LOG_DRAIN_S
        for streamer in self.streamers.values():
            streamer.join(max(0.0, deadline - time.monotonic()))
        self._log_stop.set()

    def _job(self) -> Json | None:
        try:
            return request("read the Job", self.cluster.batch.read_namespaced_job,
                           self.job_name, self.namespace)
        except NotFound:
            return None

    def _pods(self) -> tuple[list[Json], str | None]:
        listed = request("list the Job's pods", self.cluster.core.list_namespaced_pod,
                         self.namespace, label_selector=self.selector)
        return list(listed.get("items") or []), listed.get("metadata", {}).get("resourceVersion")

    def _unschedulable_for(self, pods: list[Json]) -> float | None:
        pod = _newest(pods)
        if pod is None or unschedulable_message(pod) is None:
            self._unschedulable_since = None
            return None
        if self._unschedulable_since is None:
            self._unschedulable_since = time.monotonic()
        return time.monotonic() - self._unschedulable_since

    def _stream_logs(self, pods: list[Json]) -> None:
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            name = pod["metadata"]["name"]
            if name not in self.streamers:
                for earlier in self.streamers.values():
                    earlier.join(LOG_DRAIN_S)
                streamer = LogStreamer(self.cluster, self.namespace, name, self.sink,
                                       self._log_stop, self.poll_s)
                self.streamers[name] = streamer
                streamer.start()

    def _pause(self, version: str | None) -> None:
        """Wait for a change of the pods (a watch), at most about one poll interval.

        A watch that ends with 410 Gone (or drops) only means the next round lists afresh.
        """
        seconds = max(1, round(self.poll_s))
        try:
            resp: Any = self.cluster.core.list_namespaced_pod(
                self.namespace, label_selector=self.selector, watch=True,
                resource_version=version, timeout_seconds=seconds, _preload_content=False,
                _request_timeout=(10, seconds + 10))
            try:
                if resp.status != 200:
                    raise ApiException(http_resp=resp)
                line = resp.readline()
            finally:
                resp.release_conn()
        except ApiException as exc:
            if exc.status not in TRANSIENT:
                raise api_error("watch the Job's pods", exc) from None
            line = b""
        except (urllib3.exceptions.HTTPError, OSError):
            line = b""
        if _watch_expired(line):
            self.progress.watch_restarts += 1
        elif not line:
            self.stop.wait(self.poll_s / 2)

    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.streamers.values())


def _watch_expired(line: bytes) -> bool:
    """Whether a watch's first event is an ERROR (410 Gone: the resourceVersion is too old)."""
    try:
        event = json.loads(line) if line.strip() else {}
    except ValueError:
        return True
    return bool(event.get("type") == "ERROR")


def read_log(cluster: Cluster, namespace: str, pod: str) -> bytes | None:
    """The whole log of a pod (no follow), or None when it cannot be read (yet)."""
    with contextlib.suppress(ApiException, urllib3.exceptions.HTTPError, OSError):
        resp: Any = cluster.core.read_namespaced_pod_log(pod, namespace, _preload_content=False,
                                                    _request_timeout=(10, 120))
        try:
            if resp.status == 200:
                return bytes(resp.data)
        finally:
            resp.release_conn()
    return None
