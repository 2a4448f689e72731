"""Run the trials of a sweep: at most ``parallel`` at once, each an ordinary run in a thread.

The first trial runs alone until its command starts (or it ends): its environment, or its image,
is then built, and every other trial finds it ready. A failed trial does not stop the others;
after ``max_failures`` failures no trial is started any more. SIGINT or SIGTERM stops every
running trial through its handle (process group, container or Job) and records it KILLED; trials
not yet started stay pending, so ``reprun sweep resume`` runs them.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from backends.base import ArraySlot
from runner.control import HeldRun
from runner.errors import Interrupted, ReprunError
from runner.frozen import frozen
from runner.plan import Plan, with_params
from runner.process import guarded_children, stop_signals_to
from runner.record.types import RunnerProcess, RunRecord, Status, now
from runner.sweep.record import SweepRecord, TrialInfo
from runner.sweep.workcopy import working_copy

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.sweep.store import SweepStore

Say = Callable[[str], None]
POLL_S = 0.2


class TrialSource(Protocol):
    """Where the trials come from: a fixed list, or a search asking for one at a time."""

    def next(self, record: SweepRecord) -> TrialInfo | None:
        """The next trial to start (already in ``record.trials``), or None for now."""
        ...

    def told(self, trial: TrialInfo) -> None:
        """A trial ended (its status and metric value are set)."""
        ...


class ListSource:
    """The trials of a grid or a random sample that are not FINISHED, in order."""

    def __init__(self, indexes: list[int]) -> None:
        self._left = list(indexes)

    def next(self, record: SweepRecord) -> TrialInfo | None:
        return record.trials[self._left.pop(0)] if self._left else None

    def told(self, trial: TrialInfo) -> None:
        return None

    def size(self) -> int:
        return len(self._left)


@frozen
class Policy:
    parallel: int = 1
    max_failures: int | None = None  # stop starting trials after this many failures
    verbose: bool = False  # every message of every trial
    live: bool = False  # a status line on the terminal (runner.sweep.progress)


class Driver:
    def __init__(self, plan: Plan, record: SweepRecord, sweeps: SweepStore, runs: RunStore,
                 source: TrialSource, policy: Policy, say: Say) -> None:
        from runner.sweep.progress import Progress

        self.plan = plan
        self.record = record
        self.sweeps = sweeps
        self.runs = runs
        self.source = source
        self.policy = policy
        self.progress = Progress(say, policy.live)
        self.say = self.progress.line
        self.lock = threading.Lock()
        self.signum: int | None = None
        self.failures = 0
        self.stop_reason: str | None = None
        self._controls: dict[int, HeldRun] = {}
        self._gate: tuple[int, HeldRun] | None = None  # the first trial started
        self._threads = policy.parallel
        self._array = _array_size(plan, source, policy)
        if self._array:  # every trial submitted at once, one job array: the backend throttles
            self._threads = self._array
            slot = ArraySlot(record.sweep_id, policy.parallel)
            self.plan = dataclasses.replace(plan, options=dataclasses.replace(
                plan.options, array=slot))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> SweepRecord:
        """Run the trials; the final sweep record (saved)."""
        self._save(status=Status.RUNNING, reason=None, ended_at=None, runner=this_process())
        running: dict[Future[TrialInfo], int] = {}
        pool = ThreadPoolExecutor(self._threads, thread_name_prefix="reprun-trial")
        # kill -9 of this process: the guard ends the trials' commands (runner.process).
        with stop_signals_to(self._on_signal), guarded_children(), self.progress.shown(), pool:
            while True:
                while self._may_start() and len(running) < self._limit():
                    trial = self.source.next(self.record)
                    if trial is None:
                        break
                    running[self._start(pool, trial)] = trial.index
                if not running:
                    break
                done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    self._ended(future.result())
        return self._finish()

    def _start(self, pool: ThreadPoolExecutor, trial: TrialInfo) -> Future[TrialInfo]:
        if trial.index == len(self.record.trials):  # a search's new trial
            with self.lock:
                trials = [*self.record.trials, trial]
            self._save(trials=trials)
        control = HeldRun(self)
        with self.lock:
            self._controls[trial.index] = control
        self._gate = self._gate or (trial.index, control)
        future = pool.submit(self._run_trial, trial, control)
        self.progress.status(self._counts())
        return future

    def _limit(self) -> int:
        """One trial until the first one's command started (its environment is built)."""
        gate = self._gate
        if self._array:
            return self._threads
        return self.policy.parallel if gate is None or gate[1].ready.is_set() else 1

    def _may_start(self) -> bool:
        return self.signum is None and self.stop_reason is None

    def _run_trial(self, trial: TrialInfo, control: HeldRun) -> TrialInfo:
        from runner.execute import execute

        self._update(trial.index, status=Status.RUNNING, reason=None, value=None)
        notify = self._notify_for(trial.index, control)
        try:
            plan = with_params(self.plan, trial.params, self.record.sweep_id, trial.index)
            work = self.sweeps.directory(self.record.sweep_id) / "work"
            with working_copy(plan, work, notify) as copied:
                record = execute(copied, self.runs, notify, control)
        except Interrupted as exc:
            return self._update(trial.index, run_id=control.run_id, status=Status.KILLED,
                                reason=f"stopped by {exc}")
        except ReprunError as exc:
            return self._update(trial.index, run_id=control.run_id, status=Status.FAILED,
                                reason=exc.render())
        except Exception as exc:  # reprun's own failure in one trial: the others go on
            return self._update(trial.index, run_id=control.run_id, status=Status.FAILED,
                                reason=f"reprun failed: {exc or type(exc).__name__}")
        finally:
            control.ready.set()
        value = self._value(record)
        reason = record.reason
        metric = self.record.spec.metric
        if metric and value is None and record.status is Status.FINISHED:
            reason = f"the run reported no value of '{metric}'"
        return self._update(trial.index, run_id=record.run_id, status=record.status,
                            reason=reason, value=value)

    def _notify_for(self, index: int, control: HeldRun) -> Say:
        """A trial's messages: all of the first trial's until its command starts (the
        environment being built), then warnings only, each naming the trial."""
        def notify(message: str) -> None:
            gate = self._gate
            first = gate is not None and gate[0] == index and not control.ready.is_set()
            if first or self.policy.verbose or message.startswith(("warning", "error", "drift")):
                self.say(f"trial {index}: {message}")
        return notify

    def _value(self, record: RunRecord) -> float | None:
        metric = self.record.spec.metric
        summary = record.metrics.get(metric) if metric else None
        return summary.last if summary is not None else None

    def _ended(self, trial: TrialInfo) -> None:
        with self.lock:
            self._controls.pop(trial.index, None)
        if trial.status is not Status.FINISHED and trial.status is not Status.KILLED:
            self.failures += 1
            limit = self.policy.max_failures
            if limit is not None and self.failures >= limit and self.stop_reason is None:
                self.stop_reason = (f"stopped after {self.failures} failed trial"
                                    f"{'s' if self.failures > 1 else ''} (--max-failures "
                                    f"{limit})" if limit > 1 else
                                    "stopped at the first failed trial (--fail-fast)")
        gate = self._gate
        if gate is not None and gate[0] == trial.index and gate[1].handle is None \
                and trial.status is Status.FAILED and self.stop_reason is None:
            # Its environment (or image) could not be made: every other trial would fail alike.
            self.stop_reason = f"the first trial could not start: {trial.reason}"
        self.source.told(trial)
        self.say(self._progress(trial))
        self.progress.status(self._counts())

    def _progress(self, trial: TrialInfo) -> str:
        metric = self.record.spec.metric
        value = f" {metric}={trial.value:.6g}" if metric and trial.value is not None else ""
        why = f": {trial.reason}" if trial.reason else ""
        run = f" (run {trial.run_id[:8]})" if trial.run_id else ""
        return (f"trial {trial.index} {trial.status.value if trial.status else '?'}{value}{run}"
                f"{why} | {self._counts()}")

    def _counts(self) -> str:
        """Trials done, running, failed and left; the best so far."""
        trials = self.record.trials
        counts = {s: sum(1 for t in trials if t.status is s) for s in Status}
        text = (f"{counts[Status.FINISHED]} done, {counts[Status.RUNNING]} running, "
                f"{counts[Status.FAILED] + counts[Status.KILLED]} failed, "
                f"{sum(1 for t in trials if t.status is None)} left")
        best = best_trial(self.record)
        metric = self.record.spec.metric
        if best is not None and metric:
            text += f"; best {metric}={best.value:.6g} (trial {best.index})"
        return text

    def _finish(self) -> SweepRecord:
        trials = self.record.trials
        bad = [t for t in trials if t.status in (Status.FAILED, Status.UNKNOWN)]
        if self.signum is not None:
            status = Status.KILLED
            reason = (f"interrupted by {signal.Signals(self.signum).name}; "
                      f"'reprun sweep resume {self.record.sweep_id}' runs the trials left")
        elif self.stop_reason is not None:
            status, reason = Status.FAILED, self.stop_reason
        elif bad:
            status, reason = Status.FAILED, f"{len(bad)} of {len(trials)} trials failed"
        else:
            status, reason = Status.FINISHED, None
        return self._save(status=status, reason=reason, ended_at=now(), runner=None)

    # -- the record --------------------------------------------------------------------------

    def _save(self, **update: object) -> SweepRecord:
        with self.lock:
            self.record = self.record.model_copy(update=update)
            record = self.record
        self.sweeps.save(record)
        return record

    def _update(self, index: int, **update: Any) -> TrialInfo:
        with self.lock:
            trials = list(self.record.trials)
            trial = trials[index]
            if "run_id" in update and trial.run_id and update["run_id"] != trial.run_id:
                update["attempts"] = [*trial.attempts, trial.run_id]
            trials[index] = trial.model_copy(update=update)
            self.record = self.record.model_copy(update={"trials": trials})
            record = self.record
        self.sweeps.save(record)
        return record.trials[index]

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        with self.lock:
            self.signum = self.signum or signum
            controls = list(self._controls.values())
        for control in controls:
            control.stop(signum)


def _array_size(plan: Plan, source: TrialSource, policy: Policy) -> int:
    """How many trials go into one job array (0: none, each trial is submitted alone): a grid
    or a random sample, without --max-failures (every trial is submitted at once), on a backend
    that submits arrays."""
    from backends import ARRAY_BACKENDS

    if plan.backend not in ARRAY_BACKENDS or plan.options.detach or not isinstance(
            source, ListSource) or policy.max_failures is not None:
        return 0
    return source.size() if source.size() > 1 else 0


def this_process() -> RunnerProcess:
    import os

    from runner.process import hostname, process_start_ticks

    pid = os.getpid()
    return RunnerProcess(hostname=hostname(), pid=pid, start_ticks=process_start_ticks(pid))


def best_trial(record: SweepRecord) -> TrialInfo | None:
    """The FINISHED trial with the best value of the sweep's metric."""
    scored = [t for t in record.trials if t.status is Status.FINISHED and t.value is not None]
    if not scored:
        return None
    sign = -1.0 if record.spec.goal == "max" else 1.0
    return min(scored, key=lambda t: (sign * (t.value or 0.0), t.index))


def ranked(record: SweepRecord) -> list[TrialInfo]:
    """Trials best first: FINISHED with a value by the metric, then FINISHED without one, then
    the rest (failed, killed, not run), each group by index."""
    sign = -1.0 if record.spec.goal == "max" else 1.0

    def key(trial: TrialInfo) -> tuple[int, float, int]:
        if trial.status is Status.FINISHED and trial.value is not None:
            return 0, sign * trial.value, trial.index
        return (1 if trial.status is Status.FINISHED else 2), 0.0, trial.index
    return sorted(record.trials, key=key)
