"""Follow a Job: watch its pods, stream their logs (reconnecting), and say how the run ended
(`backends.kubernetes.verdict`, pure, so the same code completes detached records).

`Events` shows the Job's and its pod's Warning events as they come (a pod that cannot be
created or started says why there, and nowhere else); a container that has not started
``start_timeout_seconds`` after the Job was created ends the run with the last warning as reason.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from backends.kubernetes import causes
from backends.kubernetes.api import TRANSIENT, Cluster, NotFound, api_error, request
from backends.kubernetes.config import KubernetesConfig
from backends.kubernetes.verdict import (
    Progress,
    Verdict,
    Waiting,
    interpret,
    newest_pod,
    stamp_key,
    terminated,
    unschedulable_message,
)
from runner.errors import BackendError
from runner.extras import needs_extra

with needs_extra("kubernetes", "Kubernetes runs"):
    import urllib3
    from kubernetes.client.exceptions import ApiException

Sink = Callable[[bytes], None]
Note = Callable[[str], None]
Json = dict[str, Any]
# What the log API puts before each line with timestamps=true (RFC 3339, nanoseconds).
STAMP = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MAX_WARNINGS = 20
LOG_DRAIN_S = 3.0  # after the end: how long the log streams may take to deliver the rest


class LogStreamer(threading.Thread):
    """Follows one pod's log into ``sink``; reconnects (without repeating lines) until it ends."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, sink: Sink,
                 stop: threading.Event, poll_s: float, note: Note | None = None) -> None:
        super().__init__(name=f"logs-{pod}", daemon=True)
        self.cluster, self.namespace, self.pod, self.sink = cluster, namespace, pod, sink
        self.stop, self.poll_s = stop, poll_s
        self.note = note
        self.last_stamp = ""
        self.delivered_at_last = 0
        self.in_connection = 0
        self.reconnects = 0
        self.connected = False  # a log stream was opened once (reconnects count after that)
        self.kubelet_lines: list[str] = []
        self.superseded = False  # catch_up has taken over
        self.kubelet_said = False  # the last connection carried a kubelet message
        self._lock = threading.Lock()

    def run(self) -> None:
        follow = True
        last_tries = 3
        while not self.stop.is_set():
            try:
                self._follow(follow)
            except ApiException as exc:
                if exc.status == 404:
                    return
            except (urllib3.exceptions.HTTPError, OSError):
                pass
            if not follow:
                if not self.kubelet_said or last_tries == 0 or self.stop.wait(self.poll_s):
                    return
                last_tries -= 1  # the kubelet answered instead of the log: ask again
                continue
            if self._container_ended():
                follow = False  # one last read for what a dropped stream did not deliver
                continue
            if self.stop.wait(self.poll_s):
                return
            if self.connected:
                self.reconnects += 1

    def _follow(self, follow: bool, own: bool = False) -> None:
        if self.superseded and not own:
            return
        self.in_connection = 0
        self.kubelet_said = False
        resp: Any = self.cluster.core.read_namespaced_pod_log(
            self.pod, self.namespace, follow=follow, timestamps=True, _preload_content=False,
            _request_timeout=(10, 600),
        )
        try:
            if resp.status != 200:
                raise ApiException(http_resp=resp)
            self.connected = True
            pending = b""
            for chunk in resp.stream(8192):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self._line(line, own)
                if self.stop.is_set() and not own:
                    return
            if pending:
                self._line(pending, own)
        finally:
            resp.release_conn()

    def catch_up(self) -> None:
        """From another thread, once this one is told to stop: read the rest of the log (no
        follow); lines this thread still receives are dropped, those already sent are not sent
        again."""
        with self._lock:
            self.superseded = True
        with contextlib.suppress(ApiException, urllib3.exceptions.HTTPError, OSError):
            self._follow(False, own=True)

    def _line(self, raw: bytes, own: bool = False) -> None:
        """Deliver a timestamped line unless an earlier connection delivered it already.

        A line without a timestamp is not the program's: the kubelet writes its own errors
        (``rpc error: code = NotFound ...``) into the stream when it loses the container. It is
        kept apart (and shown once as a note), never delivered, never a timestamp.
        """
        if own:
            self._deliver(raw)
            return
        with self._lock:
            if not self.superseded:
                self._deliver(raw)

    def _deliver(self, raw: bytes) -> None:
        stamp, _, text = raw.partition(b" ")
        if not STAMP.match(stamp):
            self._kubelet_line(raw.decode("utf-8", "replace").strip())
            return
        key = stamp_key(stamp.decode("ascii", "replace"))
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

    def _kubelet_line(self, line: str) -> None:
        self.kubelet_said = True
        if not line or line in self.kubelet_lines:
            return
        self.kubelet_lines.append(line)
        if self.note is not None:
            self.note(f"kubernetes: the log of pod {self.pod} carried a kubelet message "
                      f"(not program output; reprun reconnects): {line}")

    def _container_ended(self) -> bool:
        try:
            pod = request("read the pod", self.cluster.core.read_namespaced_pod, self.pod,
                          self.namespace)
        except NotFound:
            return True
        return terminated(pod) is not None


class Events:
    """The Warning events of the Job and its pods, each shown once (``note``) as it comes."""

    def __init__(self, cluster: Cluster, namespace: str, note: Note | None) -> None:
        self.cluster, self.namespace, self.note = cluster, namespace, note
        self.seen: set[str] = set()
        self.warnings: list[str] = []
        self.last: str | None = None
        self.lasting: str | None = None
        self.held: list[str] = []  # harmless warnings, shown only if the pod does not start
        self.enabled = True

    def poll(self, objects: list[tuple[str, str]]) -> None:
        """Look at the events of ``objects`` ((kind, name) pairs); best effort."""
        for kind, name in objects:
            if not self.enabled:
                return
            try:
                listed = request(
                    "list events", self.cluster.core.list_namespaced_event, self.namespace,
                    field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
            except BackendError as exc:
                self.enabled = False  # e.g. no RBAC for events: the run goes on without them
                if self.note is not None:
                    self.note(f"warning: cannot read the events of the run ({exc.message})")
                return
            items = sorted(listed.get("items") or [], key=_event_time)
            for event in items:
                self._one(kind, name, event)

    def _one(self, kind: str, name: str, event: Json) -> None:
        if event.get("type") != "Warning":
            return
        reason, message = event.get("reason") or "Warning", " ".join(
            str(event.get("message")).split())
        text = f"{reason}: {message}"
        self.last = text
        if causes.lasting(reason, message):
            self.lasting = text
        uid = str(event.get("metadata", {}).get("uid") or text)
        if uid in self.seen:
            return
        self.seen.add(uid)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(f"{kind} {name}: {text}")
        if causes.harmless(reason, message):
            self.held.append(f"kubernetes: {kind} {name}: {text}")
        elif self.note is not None:
            self.note(f"kubernetes: {kind} {name}: {text}")

    def show_held(self) -> None:
        """The harmless warnings held back: the pod did not start after all."""
        held, self.held = self.held, []
        if self.note is not None:
            for line in held:
                self.note(line)


def _event_time(event: Json) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or
               event.get("metadata", {}).get("creationTimestamp") or "")


class Follower:
    """Watches a Job until it ends (or ``stop`` is set), streaming its pods' logs."""

    def __init__(self, cluster: Cluster, namespace: str, job_name: str, sink: Sink,
                 config: KubernetesConfig, stop: threading.Event,
                 note: Note | None = None) -> None:
        self.cluster, self.namespace, self.job_name, self.sink = cluster, namespace, job_name, sink
        self.poll_s, self.stop, self.note = config.poll_seconds, stop, note
        self.timeout_s = config.unschedulable_timeout_seconds
        self.start_timeout_s = config.start_timeout_seconds
        self.progress = Progress()
        self.events = Events(cluster, namespace, note)
        self.selector = f"job-name={job_name}"
        self.streamers: dict[str, LogStreamer] = {}
        self._unschedulable_since: float | None = None
        self._created = time.monotonic()
        self._log_stop = threading.Event()

    def run(self) -> Verdict | None:
        """The verdict, or None when ``stop`` was set first."""
        while not self.stop.is_set():
            job = self._job()
            pods, version = self._pods()
            self.progress.observe(pods)
            self._stream_logs(pods)
            newest = newest_pod(pods)
            self.events.poll([("Job", self.job_name)] + (
                [("Pod", newest["metadata"]["name"])] if newest else []))
            waiting = Waiting(
                unschedulable_s=self._unschedulable_for(pods), unschedulable_limit_s=self.timeout_s,
                not_started_s=None if self.progress.started else time.monotonic() - self._created,
                start_limit_s=self.start_timeout_s, warning=self.events.last,
                lasting=self.events.lasting, seen_end=self.progress.seen_end())
            verdict = interpret(job, pods, waiting)
            if verdict is not None:
                if not self.progress.started:
                    self.events.show_held()
                if verdict.cleanup:
                    self._log_stop.set()  # the container never ran: nothing more will come
                self.finish_logs()
                return verdict
            self._pause(version)
        return None

    def stop_logs(self) -> None:
        self._log_stop.set()

    def finish_logs(self, catch_up: bool = True) -> None:
        """Let the log streams drain what is left, then stop them; a stream still open (or
        waiting to reconnect) by then is replaced by one last plain read of the log."""
        deadline = time.monotonic() + LOG_DRAIN_S
        for streamer in self.streamers.values():
            streamer.join(max(0.0, deadline - time.monotonic()))
        self._log_stop.set()
        for streamer in self.streamers.values():
            if streamer.is_alive() and catch_up:
                streamer.catch_up()

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
        pod = newest_pod(pods)
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
                                       self._log_stop, self.poll_s, self.note)
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
        else:
            pod = json.loads(line).get("object") or {}
            if pod.get("kind") == "Pod" and pod.get("metadata", {}).get("name"):
                self.progress.observe([pod])  # a state the next list may not show any more

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
