"""How a Job ended, from the JSON the API returns: pure, so that an attached run and a detached
record are completed by the same code, and cheap (no ``kubernetes`` import).

`interpret` maps the Job's conditions and its pods' states to a run status with a reason;
`Progress` keeps the pods' phases as they were seen; `Waiting` says how long a pod has waited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from runner.frozen import frozen
from runner.record.types import Status

Json = dict[str, Any]
WAITING_FAILURES = frozenset({
    "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError",
})


@frozen
class Verdict:
    status: Status
    exit_code: int | None
    reason: str | None
    cleanup: bool = False  # the Job would go on retrying: delete it


def _container(pod: Json) -> Json:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def terminated(pod: Json) -> Json | None:
    state = _container(pod).get("state") or {}
    return state.get("terminated")


def _condition(obj: Json, kind: str) -> Json | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def newest_pod(pods: list[Json]) -> Json | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)


@frozen
class Waiting:
    """How long the run has been waiting, and for what, when it is judged."""

    unschedulable_s: float | None = None  # the newest pod has been unschedulable this long
    unschedulable_limit_s: float = float("inf")
    not_started_s: float | None = None  # since the Job was created, no container has started
    start_limit_s: float = float("inf")
    warning: str | None = None  # the last Warning event of the Job or its pod
    lasting: str | None = None  # a Warning whose cause waiting cannot remove (causes.lasting)
    seen_end: Json | None = None  # the last terminated state seen of the newest pod (a watch)


def interpret(job: Json | None, pods: list[Json], waiting: Waiting | None = None) -> Verdict | None:
    """How the run ended, or None while it goes on."""
    waiting = waiting or Waiting()
    pod = newest_pod(pods)
    ended = (terminated(pod) if pod else None) or waiting.seen_end
    code = int(ended["exitCode"]) if ended and ended.get("exitCode") is not None else None
    if job is None:
        return _without_job(pod, ended, code)
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return Verdict(Status.FINISHED, 0 if code is None else code, None)
    failed = _condition(job, "Failed")
    if failed:
        return _failed(failed, ended, code)
    for candidate in pods:
        state = (_container(candidate).get("state") or {}).get("waiting") or {}
        if state.get("reason") in WAITING_FAILURES:
            message = state.get("message") or ""
            return Verdict(Status.FAILED, None, f"{state['reason']}: {message}".rstrip(": "),
                           cleanup=True)
    limit = waiting.unschedulable_limit_s
    if waiting.unschedulable_s is not None and waiting.unschedulable_s >= limit and pod:
        message = unschedulable_message(pod) or "no node fits the pod"
        return Verdict(Status.FAILED, None,
                       f"Unschedulable: {message} (for {waiting.unschedulable_s:.0f} s)",
                       cleanup=True)
    if waiting.not_started_s is not None and waiting.lasting is not None:
        return Verdict(Status.FAILED, None, f"{waiting.lasting} (this cannot resolve itself: "
                       "the run was not started)", cleanup=True)
    if waiting.not_started_s is not None and waiting.not_started_s >= waiting.start_limit_s:
        what = waiting.warning or (f"the pod stayed {phase_of(pod)[0]}" if pod
                                   else "no pod was created")
        return Verdict(Status.FAILED, None,
                       f"{what} (the container did not start within "
                       f"{waiting.start_limit_s:.0f} s: start_timeout_seconds)", cleanup=True)
    return None


def _failed(failed: Json, ended: Json | None, code: int | None) -> Verdict:
    why = failed.get("reason") or "Failed"
    detail = failed.get("message") or ""
    if ended and ended.get("reason") == "OOMKilled":
        why, detail = "OOMKilled", f"the container ran out of memory ({why})"
    elif code is not None:
        detail = f"command exited with code {code}" + (f" ({why})" if why else "")
        why = ended.get("reason") or why if ended else why
    return Verdict(Status.FAILED, code, f"{why}: {detail}".rstrip(": "))


def _without_job(pod: Json | None, ended: Json | None, code: int | None) -> Verdict:
    """The Job is gone: its conditions can not be read. What the pod said is the outcome."""
    gone = "the Job was deleted before reprun read its status (ttlSecondsAfterFinished?)"
    if ended is not None and code is not None:
        if code == 0:
            return Verdict(Status.FINISHED, 0, None)
        reason = ended.get("reason") or "Error"
        return Verdict(Status.FAILED, code, f"{reason}: command exited with code {code}; {gone}")
    if pod is not None:
        return Verdict(Status.KILLED, None, "the Job was deleted while its pod ran")
    return Verdict(Status.UNKNOWN, None, f"outcome unknown: {gone}, and no pod is left to ask")


def unschedulable_message(pod: Json) -> str | None:
    """The scheduler's message when the pod cannot be placed, else None."""
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "unschedulable")
    return None


def stamp_key(stamp: str) -> str:
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
    started: bool = False  # a container has run
    ends: dict[str, Json] = field(default_factory=dict)  # pod -> its terminated state, as seen

    def observe(self, pods: list[Json]) -> None:
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            name = pod["metadata"]["name"]
            phase, at = phase_of(pod)
            ended = terminated(pod)
            if ended is not None:
                self.ends[name] = dict(ended)
                if ended.get("startedAt"):
                    self._add(name, "Running", str(ended["startedAt"]))  # however short
            self._add(name, phase, at)
            state = _container(pod).get("state") or {}
            self.started = self.started or "running" in state or ended is not None
            self.pod_name = name
            self.node_name = pod.get("spec", {}).get("nodeName") or self.node_name

    def _add(self, pod: str, phase: str, at: str) -> None:
        mine = [p for p in self.phases if p["pod"] == pod]
        if any(p["phase"] == phase for p in mine) and phase == "Running":
            return
        if not mine or mine[-1]["phase"] != phase:
            self.phases.append({"pod": pod, "phase": phase, "at": at})

    def seen_end(self) -> Json | None:
        return self.ends.get(self.pod_name or "")

    def facts(self) -> Json:
        facts: Json = {"pod_phases": list(self.phases)}
        if self.pod_name:
            facts["pod_name"] = self.pod_name
        if self.node_name:
            facts["node_name"] = self.node_name
        if self.watch_restarts:
            facts["watch_restarts"] = self.watch_restarts
        return facts
