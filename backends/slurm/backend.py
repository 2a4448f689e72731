"""The Slurm backend: the run's command as a batch job, submitted with ``sbatch``, followed to
its end.

``submit`` stages the code and the batch script under the shared ``workdir``
(`backends.slurm.stage`), submits with ``sbatch --parsable`` (an argv list, kept in the record)
and returns a handle. ``wait`` asks ``squeue`` about the job every ``poll_seconds``, follows its
output file live, cancels a job still PENDING after ``start_timeout_seconds``, and once the job
has left the queue reads how it ended from ``sacct`` (`backends.slurm.status`); its outputs and
metrics are copied back into the store. ``cancel`` (Ctrl-C, a sweep's stop) runs ``scancel`` and
waits until the job is gone. A detached run is completed by `refresh_record` (``reprun runs
show``) or ended by `cancel_record` (``reprun cancel``).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from backends.base import Outcome, RunHandle, RunRequest
from backends.slurm import commands
from backends.slurm.settings import Settings, load_settings
from backends.slurm.stage import Staged, bring_back, job_env, sbatch_argv, stage, workdir_of
from backends.slurm.status import ACTIVE, Verdict, accounting_facts, pending_reason, verdict
from runner.errors import BackendError
from runner.record.types import BackendInfo, RunRecord, Status, now

GONE_WAIT_S = 60.0  # after scancel: how long the job may take to leave the queue
ACCOUNTING_WAIT_S = 10.0  # after the job left the queue: how long sacct may take to know it
UNANSWERED_S = 300.0  # squeue failing this long (slurmctld down) ends the following
FIRST_POLL_S = 0.1  # then 1.5 times longer each time, up to poll_seconds


class SlurmBackend:
    name: ClassVar[str] = "slurm"

    def preview(self, request: RunRequest) -> str:
        """The sbatch command and the batch script, without contacting the cluster."""
        from backends.slurm.stage import script_text

        config = load_settings(request.backend_config, request.config_dir or Path.cwd(),
                               request.env)
        workdir = workdir_of(config, request.env, request.config_dir or Path.cwd())
        staged = Staged.at(workdir / "runs" / request.run_id)
        argv = sbatch_argv(config, staged, request.run_id)
        return json.dumps({"sbatch": argv, "script": script_text(request.run_id,
                                                                 request.command)})

    def submit(self, request: RunRequest) -> RunHandle:
        cwd = request.config_dir or Path.cwd()
        config = load_settings(request.backend_config, cwd, request.env)
        workdir = workdir_of(config, request.env, cwd)
        staged = stage(request.run_id, request.workdir, request.command, workdir)
        env = job_env(request.env, staged)
        array: dict[str, Any] = {}
        if request.array is not None:
            from backends.slurm.array import join

            array_id, task, argv = join(request.array, config, staged, env, workdir)
            job_id = f"{array_id}_{task}"
            array = {"array_job_id": array_id, "array_task_id": task}
        else:
            argv = sbatch_argv(config, staged, request.run_id)
            job_id = commands.submit(argv, env)
        try:
            facts = {
                "job_id": job_id, **array, "cluster": commands.cluster_name(env),
                "partition": config.partition, "sbatch_argv": argv,
                "workdir": str(workdir), "staged_dir": str(staged.root),
                "backend_config": config.recordable(),
                "start_timeout_seconds": config.start_timeout_seconds,
                "poll_seconds": config.poll_seconds,
            }
            request.notify(f"slurm: submitted job {job_id}")
            return SlurmHandle(request, config, staged, env, facts)
        except BaseException:
            commands.cancel(job_id, env)
            raise

    def refresh(self, record: RunRecord, run_dir: Path) -> RunRecord:
        return refresh_record(record, run_dir)

    def cancel_recorded(self, record: RunRecord, run_dir: Path) -> RunRecord:
        return cancel_record(record, run_dir)

    def replay_config(self, record: RunRecord, run_dir: Path, override: str | None,
                      cwd: Path, notify: Callable[[str], None]) -> str:
        """The recorded config, ``override``'s keys (another partition...) on top."""
        config: dict[str, Any] = dict(record.backend.facts.get("backend_config") or {})
        if override:
            from backends.slurm.config import load_config

            config.update(load_config(override, cwd).recordable())
        return json.dumps(config)


class LogFollower:
    """Copies what the job appends to its output file into the run's log (and the terminal)."""

    def __init__(self, source: Path, sink: Callable[[bytes], None]) -> None:
        self.source, self.sink = source, sink
        self.offset = 0

    def pump(self) -> None:
        try:
            with self.source.open("rb") as handle:
                handle.seek(self.offset)
                while chunk := handle.read(65536):
                    self.offset += len(chunk)
                    self.sink(chunk)
        except FileNotFoundError:
            return


class SlurmHandle:
    """A submitted job. ``wait`` follows it; ``cancel`` (signal-safe) asks ``wait`` to scancel."""

    def __init__(self, request: RunRequest, config: Settings, staged: Staged,
                 env: Mapping[str, str], facts: dict[str, Any]) -> None:
        self.request, self.config, self.staged, self.env = request, config, staged, env
        self._facts = facts
        self._stop = threading.Event()
        self._signal: int | None = None
        self._outcome: Outcome | None = None
        self.started_at = now()
        self._log = request.log_path.open("ab")
        self._follower = LogFollower(staged.log, self._sink)

    def info(self) -> BackendInfo:
        return BackendInfo(name=SlurmBackend.name)

    def facts(self) -> Mapping[str, Any]:
        return MappingProxyType(dict(self._facts))

    def _sink(self, chunk: bytes) -> None:
        self._log.write(chunk)
        self._log.flush()
        if self.request.echo:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    def cancel(self, first_signal: int = signal.SIGINT) -> None:
        if self._signal is None:
            self._signal = first_signal
        self._stop.set()

    def status(self) -> Status:
        return self._outcome.status if self._outcome else Status.RUNNING

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle

    def wait(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        job = str(self._facts["job_id"])
        try:
            try:
                found = self._follow(job)
            except BaseException:
                stop_job(job, self.env)  # never leave it running unfollowed
                raise
            self._follower.pump()
        finally:
            self._log.close()
        self._outcome = self._finish(found)
        return self._outcome

    def _follow(self, job: str) -> Verdict | None:
        """Until the job has left the queue: None when it did, else the verdict (pending too
        long before it first started, or stopped)."""
        submitted = time.monotonic()
        seen, started = "", False
        pause = FIRST_POLL_S
        failing_since: float | None = None
        while True:
            if self._stop.is_set():
                return self._stopped(job)
            try:
                queued = queue_state(job, self.env)
                failing_since = None
            except BackendError as exc:  # slurmctld restarting: the job goes on, so do we
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > UNANSWERED_S:
                    raise
                self.request.notify(f"warning: {exc.render()}; asking again")
                self._stop.wait(self.config.poll_seconds)
                continue
            self._follower.pump()
            if queued is None or queued.state not in ACTIVE:
                return None
            if queued.state == "PENDING" and not started:
                said = pending_reason(queued.reason)
                if said != seen and queued.reason:
                    self.request.notify(f"slurm: job {job} PENDING ({said})")
                    seen = said
                waited = time.monotonic() - submitted
                if waited >= self.config.start_timeout_seconds:
                    stop_job(job, self.env)
                    return pending_verdict(said, waited, self.config.start_timeout_seconds)
            elif queued.state == "RUNNING" and seen != "RUNNING":
                self.request.notify(f"slurm: job {job} RUNNING on {queued.nodes}")
                seen, started = "RUNNING", True
            pause = min(self.config.poll_seconds, pause * 1.5)  # short jobs end early
            self._stop.wait(pause)

    def _stopped(self, job: str) -> Verdict:
        name = signal.Signals(self._signal or signal.SIGINT).name
        self.request.notify(f"stopping: cancelling job {job} (scancel)...")
        problem = stop_job(job, self.env)
        if problem:
            self.request.notify(f"warning: {problem}")
        self._facts["signal"] = name
        return Verdict(Status.KILLED, None, f"stopped by {name}: the job was cancelled (scancel)")

    def _finish(self, found: Verdict | None) -> Outcome:
        job = str(self._facts["job_id"])
        acct = ended_accounting(job, self.env)
        facts = {**self._facts, **(accounting_facts(acct) if acct else {})}
        if found is None:
            found = verdict(acct, self.config.recordable()) if acct else Verdict(
                Status.UNKNOWN, None, f"job {job} left the queue, but neither sacct nor "
                "scontrol knows how it ended")
        problem = _bring_back(self.staged, self.request.output_dir, self.request.metrics_stream)
        if problem:
            facts["outputs_problem"] = problem
            self.request.notify(f"warning: {problem}")
        return Outcome(found.status, found.exit_code, self.started_at,
                       _ended_at(facts) or now(), found.reason, MappingProxyType(facts))


def queue_state(job: str, env: Mapping[str, str]) -> commands.QueueState | None:
    """The job in the queue (a task of an array: one squeue for all of its tasks)."""
    if "_" not in job:
        return commands.queue_state(job, env)
    from backends.slurm.array import QUEUE

    return QUEUE.state(job, env)


def pending_verdict(said: str, waited: float, limit: float) -> Verdict:
    return Verdict(Status.FAILED, None,
                   f"PENDING ({said}) for {waited:.0f} s: the job did not start within "
                   f"{limit:g} s (start_timeout_seconds) and was cancelled")


def stop_job(job: str, env: Mapping[str, str]) -> str | None:
    """``scancel``, then wait (bounded) until the job has left the queue; what went wrong."""
    try:
        commands.cancel(job, env)
        deadline = time.monotonic() + GONE_WAIT_S
        while time.monotonic() < deadline:
            queued = commands.queue_state(job, env)
            if queued is None or queued.state not in ACTIVE:
                return None
            time.sleep(0.3)
    except BackendError as exc:
        return f"job {job} could not be cancelled: {exc.render()}; cancel it with scancel"
    return f"job {job} was still in the queue {GONE_WAIT_S:.0f} s after scancel"


def ended_accounting(job: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """The accounting of a job that has left the queue (sacct may take a moment)."""
    deadline = time.monotonic() + ACCOUNTING_WAIT_S
    while True:
        acct = commands.accounting(job, env)
        state = (acct or {}).get("State", "").split(" ")[0]
        if acct is not None and state and state not in ACTIVE:
            return acct
        if time.monotonic() > deadline:
            return acct
        time.sleep(0.3)


def _bring_back(staged: Staged, output_dir: Path, metrics: Path | None) -> str | None:
    """Copy the outputs and metrics back, then remove the staged files (all of them are in the
    store now: call once the log has been read); a problem keeps them and is returned."""
    try:
        bring_back(staged, output_dir, metrics)
    except (OSError, shutil.Error) as exc:
        return f"the job's outputs could not be copied back from {staged.outputs}: {exc}"
    shutil.rmtree(staged.root, ignore_errors=True)
    return None


def _ended_at(facts: Mapping[str, Any]) -> datetime | None:
    end = facts.get("end_time")
    return datetime.fromisoformat(end) if end else None


def _env() -> dict[str, str]:
    """The environment of Slurm's commands for a run found in the store: reprun's own."""
    import os

    return dict(os.environ)


def refresh_record(record: RunRecord, run_dir: Path) -> RunRecord:
    """Ask Slurm how a detached run is doing: its log, and (when it ended) its outcome."""
    facts = dict(record.backend.facts)
    job, env = str(facts["job_id"]), _env()
    staged = Staged.at(Path(facts["staged_dir"]))
    _copy_log(staged, run_dir / record.log_file)
    queued = commands.queue_state(job, env)
    ended: Verdict | None = None
    if queued is not None and queued.state in ACTIVE:
        facts.update({"slurm_state": queued.state, "pending_reason": queued.reason or None})
        limit = float(facts.get("start_timeout_seconds", float("inf")))
        waited = (now() - record.started_at).total_seconds()
        if queued.state != "PENDING" or waited < limit:
            return record.model_copy(update={"backend": BackendInfo(name=record.backend.name,
                                                                    facts=facts)})
        stop_job(job, env)
        ended = pending_verdict(pending_reason(queued.reason), waited, limit)
    acct = ended_accounting(job, env)
    facts.update(accounting_facts(acct) if acct else {})
    if ended is None:
        ended = verdict(acct, facts.get("backend_config") or {}) if acct else Verdict(
            Status.UNKNOWN, None, f"job {job}: neither sacct nor scontrol knows how it ended")
    from runner.tracking.metrics import stream_path

    _copy_log(staged, run_dir / record.log_file)
    problem = _bring_back(staged, Path(record.output_dir), stream_path(run_dir))
    if problem:
        facts["outputs_problem"] = problem
    return _ended_record(record, ended, facts)


def _ended_record(record: RunRecord, ended: Verdict, facts: dict[str, Any]) -> RunRecord:
    end = _ended_at(facts) or now()
    return record.model_copy(update={
        "status": ended.status, "exit_code": ended.exit_code, "reason": ended.reason,
        "ended_at": end, "duration_s": round((end - record.started_at).total_seconds(), 3),
        "backend": BackendInfo(name=record.backend.name, facts=facts),
    })


def _copy_log(staged: Staged, log: Path) -> None:
    if staged.log.is_file():
        shutil.copyfile(staged.log, log)


def cancel_record(record: RunRecord, run_dir: Path) -> RunRecord:
    """End a run from its record: scancel its job, keep its log, mark it KILLED."""
    facts = dict(record.backend.facts)
    job, env = str(facts["job_id"]), _env()
    problem = stop_job(job, env)
    if problem:
        raise BackendError(problem)
    acct = ended_accounting(job, env)
    facts.update(accounting_facts(acct) if acct else {})
    staged = Staged.at(Path(facts["staged_dir"]))
    _copy_log(staged, run_dir / record.log_file)
    from runner.tracking.metrics import stream_path

    problem = _bring_back(staged, Path(record.output_dir), stream_path(run_dir))
    if problem:
        facts["outputs_problem"] = problem
    return _ended_record(record, Verdict(Status.KILLED, None, "cancelled with 'reprun cancel': "
                                         "the job was cancelled (scancel)"), facts)


__all__ = ["SlurmBackend", "cancel_record", "refresh_record"]
