"""Run the steps of a pipeline run: each an ordinary run in a thread, through the backend's
handles, at most ``parallel`` at once, each as soon as the steps it needs FINISHED.

A step is reused when a FINISHED run had the same code, environment, parameters and inputs
(`runner.tracking.reuse`), decided while a lock on the step's inputs is held
(`runner.pipeline.lock`). A failed step stops the steps that need it, not the others. SIGINT or
SIGTERM stops every running step through its handle and records it KILLED; the steps not
started stay pending, for ``reprun pipeline resume``.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import FrameType
from typing import Any

from runner.control import HeldRun
from runner.envs.cache import cache_root
from runner.errors import Interrupted, ReprunError
from runner.pipeline.graph import blocked_by, ready
from runner.pipeline.lock import held, lock_path
from runner.pipeline.start import Policy
from runner.pipeline.steps import origin_outputs, step_options, step_values
from runner.plan import Opened, Plan, RunOptions, make_plan
from runner.process import guarded_children, stop_signals_to
from runner.record.store import RunStore
from runner.record.types import MetricSummary, RunRecord, Status, StepInfo, now

Say = Callable[[str], None]
POLL_S = 0.2


class Driver:
    def __init__(self, opened: Opened, options: RunOptions, record: RunRecord, store: RunStore,
                 policy: Policy, say: Say) -> None:
        assert record.pipeline is not None
        self.opened = opened
        self.options = options
        self.record = record
        self.store = store
        self.policy = policy
        self.say = say
        self.spec = opened.project.spec.pipelines[record.pipeline.name]
        self.needed = {s.name: list(s.needs) for s in record.pipeline.steps}
        self.order = [s.name for s in record.pipeline.steps]
        self.lock = threading.RLock()  # the signal handler takes it in the main thread
        self.signum: int | None = None
        self.status: dict[str, Status | None] = {}
        self.outputs: dict[str, Path] = {}
        self.blocked: dict[str, str] = {}
        self._controls: dict[str, HeldRun] = {}
        self._envs: dict[tuple[str, str, str | None], Plan] = {}
        self._env_lock = threading.Lock()
        self._digests = Path()
        self._kept(record.pipeline.steps)

    def _kept(self, steps: list[StepInfo]) -> None:
        """The FINISHED steps of a resumed run stay; their outputs are where they were."""
        from runner.tracking.statcache import DATABASE

        self._digests = cache_root(self.options.base_env) / DATABASE
        for step in steps:
            if step.status is Status.FINISHED and step.run_id is not None:
                try:
                    done = self.store.load(step.run_id)
                except (ReprunError, OSError, ValueError):
                    continue
                self.status[step.name] = Status.FINISHED
                self.outputs[step.name] = origin_outputs(self.store, done, self._digests)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> RunRecord:
        pending = [s for s in self.order if self.status.get(s) is not Status.FINISHED]
        running: dict[Future[StepInfo], str] = {}
        pool = ThreadPoolExecutor(self.policy.parallel, thread_name_prefix="reprun-step")
        # kill -9 of this process: the guard ends the steps' commands (runner.process).
        with stop_signals_to(self._on_signal), guarded_children(), pool:
            while True:
                if self.signum is None:
                    self._block(pending)
                    for name in ready(self.needed, self.status, pending):
                        if len(running) >= self.policy.parallel:
                            break
                        pending.remove(name)
                        running[self._start(pool, name)] = name
                if not running:
                    break
                done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    self._ended(future.result())
        return self._finish()

    def _block(self, pending: list[str]) -> None:
        for name in list(pending):
            why = blocked_by(self.needed, self.status, self.blocked, name)
            if why is not None:
                pending.remove(name)
                self.blocked[name] = why
                info = self._update(name, status=None, reason=f"not run: step '{why}' did not "
                                                              "finish")
                self.say(f"step {name}: {info.reason}")

    def _start(self, pool: ThreadPoolExecutor, name: str) -> Future[StepInfo]:
        control = HeldRun(self)
        with self.lock:
            self._controls[name] = control
            self.status[name] = Status.RUNNING
        return pool.submit(self._run_step, name, control)

    def _run_step(self, name: str, control: HeldRun) -> StepInfo:
        from runner.execute import execute

        step = self.spec.steps[name]
        notify = self._notify_for(name)
        self._update(name, save=False, status=Status.RUNNING, reason=None, reused_from=None)
        try:
            with self.lock:
                outputs, runs = dict(self.outputs), self._run_ids()
            values = step_values(name, step, self.record.parameters, outputs, runs)
            reuse = not {"all", name}.intersection(self.policy.force)
            options = step_options(self.options, name, step, values, self.opened.project.directory,
                                   self.record.run_id, reuse, self.options.echo and
                                   self.policy.parallel == 1)
            facts = {"project": str(self.opened.project.directory), "entry": step.entry_point,
                     "backend": options.backend, "values": values}
            with held(lock_path(self.store.home, facts), lambda: self.signum,
                      lambda: notify("waiting for another reprun running this step with the "
                                     "same inputs")):
                plan = make_plan(options, dataclasses.replace(self.opened, resolving=None),
                                 shared=True)
                plan = self._environment(plan)
                record = execute(plan, self.store, notify, control)
        except Interrupted as exc:
            return self._update(name, run_id=control.run_id, status=Status.KILLED,
                                reason=f"stopped by {exc}")
        except ReprunError as exc:
            return self._update(name, run_id=control.run_id, status=Status.FAILED,
                                reason=exc.render())
        except Exception as exc:  # reprun's own failure in one step: the others go on
            return self._update(name, run_id=control.run_id, status=Status.FAILED,
                                reason=f"reprun failed: {exc or type(exc).__name__}")
        if record.status is Status.FINISHED:
            where = origin_outputs(self.store, record, self._digests)
            with self.lock:
                self.outputs[name] = where
        return self._update(name, run_id=record.run_id, status=record.status,
                            reason=record.reason, reused_from=record.reused_from)

    def _environment(self, plan: Plan) -> Plan:
        """The step's plan with its environment resolved and built, once for every step that
        shares its manager and backend."""
        from runner.environment import prepare_environment

        key = (plan.manager, plan.backend, plan.options.backend_config)
        with self._env_lock:
            prepared = self._envs.get(key)
            if prepared is None:
                prepared = prepare_environment(plan, self.say)
                self._envs[key] = prepared
        return dataclasses.replace(plan, lock=prepared.lock, environment=prepared.environment)

    def _notify_for(self, name: str) -> Say:
        def notify(message: str) -> None:
            if self.policy.verbose or message.startswith(("warning", "error", "drift", "wait")):
                self.say(f"step {name}: {message}")
        return notify

    def _run_ids(self) -> dict[str, str]:
        assert self.record.pipeline is not None
        return {s.name: s.run_id for s in self.record.pipeline.steps if s.run_id is not None}

    def _ended(self, info: StepInfo) -> None:
        with self.lock:
            self._controls.pop(info.name, None)
        run = f"run {info.run_id[:8]}" if info.run_id else "no run"
        if info.status is Status.FINISHED and info.reused_from is not None:
            self.say(f"step {info.name}: reused {info.reused_from[:8]} ({run})")
        elif info.status is Status.FINISHED:
            self.say(f"step {info.name}: ran ({run}, FINISHED)")
        else:
            state = info.status.value if info.status else "not run"
            self.say(f"step {info.name}: {state} ({run}): {info.reason}")

    # -- the record --------------------------------------------------------------------------

    def _update(self, name: str, save: bool = True, **update: Any) -> StepInfo:
        """A step's entry changed (and the record saved, unless only its start: the step's run
        record, with the pipeline run as parent, says it is running)."""
        with self.lock:
            assert self.record.pipeline is not None
            steps = list(self.record.pipeline.steps)
            index = next(i for i, s in enumerate(steps) if s.name == name)
            old = steps[index]
            if update.get("run_id") and old.run_id and update["run_id"] != old.run_id:
                update["attempts"] = [*old.attempts, old.run_id]
            steps[index] = old.model_copy(update=update)
            if "status" in update:
                self.status[name] = update["status"]
            pipeline = self.record.pipeline.model_copy(update={"steps": steps})
            self.record = self.record.model_copy(update={"pipeline": pipeline})
            if save:
                self.store.save(self.record)
        return steps[index]

    def _finish(self) -> RunRecord:
        assert self.record.pipeline is not None
        steps = self.record.pipeline.steps
        left = [s.name for s in steps if s.status is not Status.FINISHED]
        resume = f"'reprun pipeline resume {self.record.run_id[:8]}' continues it"
        if self.signum is not None:
            status = Status.KILLED
            reason: str | None = (f"interrupted by {signal.Signals(self.signum).name}; "
                                  f"{resume}")
        elif left:
            failed = [s.name for s in steps if s.status in (Status.FAILED, Status.KILLED,
                                                            Status.UNKNOWN)]
            status = Status.FAILED
            reason = (f"step {', '.join(failed) or left[0]} failed, {len(left)} of "
                      f"{len(steps)} steps did not finish; {resume}")
        else:
            status, reason = Status.FINISHED, None
        ended = now()
        with self.lock:
            facts = dict(self.record.backend.facts)
            if self.signum is not None:  # the exit code is 128 + this signal
                facts["signal"] = signal.Signals(self.signum).name
            self.record = self.record.model_copy(update={
                "backend": self.record.backend.model_copy(update={"facts": facts}),
                "status": status, "reason": reason, "ended_at": ended, "runner": None,
                "exit_code": 0 if status is Status.FINISHED else None,
                "duration_s": round((ended - self.record.started_at).total_seconds(), 3),
                "metrics": self._metrics(steps)})
            record = self.record
        self.store.save(record)
        return record

    def _metrics(self, steps: list[StepInfo]) -> dict[str, MetricSummary]:
        """Each step's metrics as STEP.NAME."""
        found: dict[str, MetricSummary] = {}
        for step in steps:
            if step.status is not Status.FINISHED or step.run_id is None:
                continue
            try:
                done = self.store.load(step.run_id)
            except (ReprunError, OSError, ValueError):
                continue
            found.update({f"{step.name}.{k}": v for k, v in done.metrics.items()})
        return found

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        with self.lock:
            self.signum = self.signum or signum
            controls = list(self._controls.values())
        for control in controls:
            control.stop(signum)
