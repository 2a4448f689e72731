"""Slurm job states mapped onto reprun's statuses, with a reason for people (pure functions)."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from backends.slurm.commands import rss_bytes, seconds, stamp
from runner.frozen import frozen
from runner.record.types import Status

# squeue states of a job that has not ended (anything else: ask sacct).
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED",
                    "RESIZING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING",
                    "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
WHY = {
    "TIMEOUT": "the job reached its time limit",
    "OUT_OF_MEMORY": "the job used more memory than it was given",
    "NODE_FAIL": "a node of the job failed",
    "PREEMPTED": "the job was preempted by another job",
    "BOOT_FAIL": "a node of the job failed to boot",
    "DEADLINE": "the job reached its deadline",
    "REVOKED": "the job was revoked (federation)",
    "CANCELLED": "the job was cancelled (scancel)",
}
KILLED_STATES = frozenset({"CANCELLED", "PREEMPTED"})


@frozen
class Verdict:
    status: Status
    exit_code: int | None
    reason: str | None


def split_exit(text: str) -> tuple[int | None, int | None]:
    """Slurm's ``CODE:SIGNAL`` as two numbers (None when missing)."""
    code, _, sig = text.partition(":")
    return (int(code) if code.strip().isdigit() else None,
            int(sig) if sig.strip().isdigit() else None)


def verdict(acct: Mapping[str, str], config: Mapping[str, Any]) -> Verdict:
    """How the job ended, from its accounting line (sacct's field names)."""
    state = (acct.get("State") or "UNKNOWN").split()[0].rstrip("+")
    code, sig = split_exit(acct.get("ExitCode", ""))
    killed_by = sig if sig and 0 < sig < 65 else None
    exit_code = 128 + killed_by if killed_by else code
    if state == "COMPLETED":
        return Verdict(Status.FINISHED, code or 0, None)
    if state == "FAILED":
        if killed_by:
            name = signal.Signals(killed_by).name if killed_by in signal.valid_signals() else ""
            detail = f"the command was killed by signal {killed_by} {name}".rstrip()
        else:
            detail = f"command exited with code {code}"
        why = acct.get("Reason", "")
        return Verdict(Status.FAILED, exit_code,
                       f"{detail} (Slurm: FAILED{', ' + why if why else ''})")
    limit = {"TIMEOUT": ("time", config.get("time")),
             "OUT_OF_MEMORY": ("mem", config.get("mem"))}.get(state)
    given = f" ({limit[0]}: {limit[1]})" if limit and limit[1] else ""
    reason = f"{state}: {WHY.get(state, 'the job ended ' + state)}{given}"
    status = Status.KILLED if state in KILLED_STATES else Status.FAILED
    if state == "OUT_OF_MEMORY":
        exit_code = None  # Slurm reports 0:125: no exit code of the command
    return Verdict(status, exit_code, reason)


def pending_reason(reason: str) -> str:
    """squeue's reason code for a pending job, for people."""
    known = {
        "PartitionConfig": "the request exceeds what the partition's nodes have",
        "Resources": "waiting for resources",
        "Priority": "waiting behind jobs of higher priority",
        "ReqNodeNotAvail": "a requested node is not available",
        "BadConstraints": "no node has the requested constraints",
        "PartitionDown": "the partition is down",
        "QOSMaxJobsPerUserLimit": "the QOS allows no more jobs of this user",
        "AssocGrpCpuLimit": "the account's CPU limit is reached",
        "Dependency": "waiting for a dependency",
        "JobHeldUser": "held by the user",
        "JobHeldAdmin": "held by an administrator",
    }
    meaning = known.get(reason)
    return f"{reason}: {meaning}" if meaning else (reason or "no reason given")


def accounting_facts(acct: Mapping[str, str]) -> dict[str, Any]:
    """The figures the record keeps: times, node list, elapsed, max RSS, CPU time."""
    elapsed = seconds(acct.get("Elapsed", ""))
    ncpus = acct.get("NCPUS", "")
    facts: dict[str, Any] = {
        "slurm_state": acct.get("State", ""),
        "slurm_exit_code": acct.get("ExitCode", ""),
        "submit_time": stamp(acct.get("Submit", "")),
        "start_time": stamp(acct.get("Start", "")),
        "end_time": stamp(acct.get("End", "")),
        "nodes": acct.get("NodeList") or None,
        "partition": acct.get("Partition") or None,
        "elapsed_s": elapsed,
        "ncpus": int(ncpus) if ncpus.isdigit() else None,
        "max_rss_bytes": rss_bytes(acct["MaxRSS"]) if acct.get("MaxRSS") else None,
        "cpu_time_s": seconds(acct.get("TotalCPU", "")),
        "allocated_cpu_time_s": seconds(acct.get("CPUTime", "")) or (
            elapsed * int(ncpus) if elapsed is not None and ncpus.isdigit() else None),
        "accounting_source": acct.get("source"),
    }
    if facts["nodes"] in ("(null)", "None assigned"):
        facts["nodes"] = None
    cluster = acct.get("Cluster")
    if cluster and cluster != "unknown":
        facts["cluster"] = cluster
    return facts
