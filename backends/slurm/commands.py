"""The one seam to Slurm: sbatch, squeue, sacct, scontrol, sinfo and scancel, argv lists only.

Every command runs through `runner.process.capture` with the environment it is given (a new dict:
``SLURM_CONF`` and ``PATH`` come from the caller's). A missing command or a refusal becomes a
`BackendError` (one line, Slurm's own last message); nothing here builds a shell string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from runner.errors import BackendError, UsageError
from runner.frozen import frozen
from runner.process import Completed, capture

TIMEOUT_S = 60.0
# Fields read from sacct: one line per job (and per step with full accounting).
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "Submit", "Start", "End", "NodeList",
                "Partition", "Cluster", "NCPUS", "CPUTime", "TotalCPU", "MaxRSS", "Reason")
COMPLETION_FIELDS = SACCT_FIELDS[:-4]  # what a job completion file (sacct -c) has


@frozen
class QueueState:
    """A job as squeue shows it while it is in the queue."""

    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why it pends (None while it runs)
    nodes: str
    partition: str


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(argv: Sequence[str], env: Mapping[str, str], what: str,
        timeout: float = TIMEOUT_S) -> Completed:
    """Run one Slurm command; a missing program or a timeout is a one-line BackendError."""
    try:
        return capture(list(argv), env=env, timeout=timeout)
    except FileNotFoundError:
        raise UsageError(f"'{argv[0]}' is not on PATH, so reprun cannot {what}",
                         hint="run reprun where the Slurm commands are installed (a login "
                              "node), or add them to PATH") from None
    except TimeoutError:
        raise BackendError(f"'{argv[0]}' did not answer within {timeout:g} s when asked to "
                           f"{what}", hint="is slurmctld up? try 'sinfo'") from None


def failed(result: Completed, what: str) -> BackendError:
    said = last_line(result.stderr) or last_line(result.stdout) or f"exit code {result.returncode}"
    return BackendError(f"{result.argv[0]} could not {what}: {said}")


def submit(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The job id ``sbatch --parsable`` printed (``ID`` or ``ID;cluster``)."""
    result = run(argv, env, "submit the job")
    if not result.ok:
        raise failed(result, "submit the job")
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise BackendError(f"sbatch printed no job id: '{last_line(result.stdout)}'")
    return job_id


def partitions(env: Mapping[str, str]) -> list[str]:
    """The partitions of the cluster (the default one is marked '*' by sinfo; unmarked here)."""
    result = run(["sinfo", "-h", "-o", "%P"], env, "list the partitions")
    if not result.ok:
        raise failed(result, "list the partitions")
    return [line.strip().rstrip("*") for line in result.stdout.splitlines() if line.strip()]


def cluster_name(env: Mapping[str, str]) -> str | None:
    result = run(["scontrol", "show", "config"], env, "read the cluster's configuration")
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip() or None
    return None


def queue_state(job_id: str, env: Mapping[str, str]) -> QueueState | None:
    """The job while it is queued or running; None once it has left the queue."""
    result = run(["squeue", "-h", "-j", job_id, "-o", "%T|%r|%N|%P"], env, "ask about the job")
    if not result.ok:
        if "Invalid job id" in result.stderr:
            return None
        raise failed(result, f"ask about job {job_id}")
    line = last_line(result.stdout)
    if not line:
        return None
    state, reason, nodes, partition = [*line.split("|"), "", "", ""][:4]
    return QueueState(state, "" if reason in ("None", "(null)") else reason, nodes, partition)


def array_states(array: str, env: Mapping[str, str]) -> dict[str, QueueState]:
    """Every task of job array ``array`` still in the queue, by its id ``ARRAY_TASK``."""
    result = run(["squeue", "-h", "-r", "-j", array, "-o", "%i|%T|%r|%N|%P"], env,
                 "ask about the job array")
    if not result.ok:
        if "Invalid job id" in result.stderr:
            return {}
        raise failed(result, f"ask about job array {array}")
    states = {}
    for line in result.stdout.splitlines():
        task, state, reason, nodes, partition = [*line.split("|"), "", "", "", ""][:5]
        states[task.strip()] = QueueState(state, "" if reason in ("None", "(null)") else reason,
                                          nodes, partition)
    return states


def accounting(job_id: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """What sacct knows of the ended job: its own line, with MaxRSS and TotalCPU taken from its
    steps; from the job completion file (``sacct -c``) when the cluster keeps no database;
    from ``scontrol show job`` when neither has it (yet). None: nobody knows the job."""
    fields = ",".join(SACCT_FIELDS[:-1])
    full = run(["sacct", "-n", "-P", "-j", job_id, "-o", fields], env, "read the job's accounting")
    if full.ok and full.stdout.strip():
        return _full(job_id, full.stdout)
    completion = run(["sacct", "-c", "-n", "-P", "-j", job_id, "-o",
                      ",".join(COMPLETION_FIELDS)], env, "read the job completion file")
    if completion.ok:
        for line in completion.stdout.splitlines():
            values = dict(zip(COMPLETION_FIELDS, line.split("|"), strict=False))
            if values.get("JobID") == job_id:
                return {**values, "source": "sacct -c (job completion file)"}
    return show_job(job_id, env)


def _full(job_id: str, text: str) -> dict[str, str] | None:
    names = SACCT_FIELDS[:-1]
    rows = [dict(zip(names, line.split("|"), strict=False)) for line in text.splitlines()]
    job = next((r for r in rows if r.get("JobID") == job_id), None)
    if job is None:
        return None
    for row in rows:  # MaxRSS is on the steps (.batch), not on the job's line
        if row.get("JobID", "").startswith(f"{job_id}.") and row.get("MaxRSS"):
            job["MaxRSS"] = max(job.get("MaxRSS") or "", row["MaxRSS"], key=rss_bytes)
    return {**job, "source": "sacct"}


def show_job(job_id: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """``scontrol show job`` (kept by slurmctld for MinJobAge after the end) in sacct's names."""
    result = run(["scontrol", "show", "job", "-o", job_id], env, "ask about the job")
    if not result.ok or not result.stdout.strip():
        return None
    pairs = dict(part.split("=", 1) for part in result.stdout.split() if "=" in part)
    return {"JobID": job_id, "State": pairs.get("JobState", ""),
            "ExitCode": pairs.get("ExitCode", ""), "Elapsed": pairs.get("RunTime", ""),
            "Submit": pairs.get("SubmitTime", ""), "Start": pairs.get("StartTime", ""),
            "End": pairs.get("EndTime", ""), "NodeList": pairs.get("NodeList", ""),
            "Partition": pairs.get("Partition", ""), "NCPUS": pairs.get("NumCPUs", ""),
            "Reason": pairs.get("Reason", ""), "source": "scontrol show job"}


def cancel(job_id: str, env: Mapping[str, str], signal_name: str | None = None) -> None:
    argv = ["scancel", *([f"--signal={signal_name}", "--full"] if signal_name else []), job_id]
    result = run(argv, env, "cancel the job")
    if not result.ok and "Invalid job id" not in result.stderr:
        raise failed(result, f"cancel job {job_id}")


def rss_bytes(text: str) -> int:
    """``168600K`` -> bytes (sacct's MaxRSS); 0 when empty."""
    text = text.strip()
    if not text:
        return 0
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def seconds(text: str) -> float | None:
    """Slurm's ``[D-]HH:MM:SS[.mmm]`` (or ``MM:SS``) as seconds; None when empty."""
    text = text.strip()
    if not text or text in ("INVALID", "UNLIMITED"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return (int(days) if days else 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def stamp(text: str) -> str | None:
    """A Slurm time (local, no zone) as ISO 8601 with the zone; None for Unknown/None."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone().isoformat()
    except ValueError:
        return None
