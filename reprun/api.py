"""`reprun.run` and `reprun.runs`: the library calls the command line makes, for Python callers.

Nothing here prints unless asked (``echo``: the command's own output; ``notify``: reprun's
messages), changes ``os.environ`` or exits: errors are raised as the exceptions of
`runner.errors`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from runner.record.store import RunStore
    from runner.record.types import RunRecord

PARENT_VARIABLE = "REPRUN_RUN_ID"  # set by reprun for the command of every run
Notify = Callable[[str], None]


class Run:
    """A run in the store: its id, and its record read again on each access until it ended."""

    def __init__(self, run_id: str | None, store: RunStore,
                 worker: threading.Thread | None = None,
                 outcome: list[BaseException] | None = None) -> None:
        self._run_id = run_id
        self._store = store
        self._worker = worker
        self._outcome = outcome if outcome is not None else []
        self._record: RunRecord | None = None

    def __repr__(self) -> str:
        return f"Run(run_id={self._run_id!r})"

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self.wait()
        assert self._run_id is not None
        return self._run_id

    @property
    def record(self) -> RunRecord:
        """The run record (`runner.record.types.RunRecord`), as of now."""
        if self._record is not None and self._record.status.done:
            return self._record
        self._record = self._store.reconcile(self._store.get(self.run_id))
        return self._record

    @property
    def status(self) -> str:
        """RUNNING, FINISHED, FAILED, KILLED or UNKNOWN."""
        return self.record.status.value

    @property
    def metrics(self) -> dict[str, float]:
        """The last value of each metric the run reported (a pipeline run: STEP.NAME)."""
        return {name: m.last for name, m in self.record.metrics.items()}

    @property
    def params(self) -> dict[str, str]:
        return dict(self.record.parameters)

    @property
    def outputs(self) -> Path:
        """The run's output directory (REPRUN_OUTPUT_DIR of its command)."""
        return Path(self.record.output_dir)

    @property
    def parent(self) -> str | None:
        return self.record.parent

    def wait(self, timeout: float | None = None) -> Run:
        """Wait until a run started with ``synchronous=False`` ended; its error, if reprun
        failed to run it, is raised here. Returns the run."""
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                raise TimeoutError(f"run {self._run_id or '(starting)'} is still running")
            self._worker = None
            if self._outcome:
                raise self._outcome[0]
        return self


def _store() -> RunStore:
    from runner.record.home import check_layout, reprun_home
    from runner.record.store import RunStore

    store = RunStore(reprun_home(os.environ))
    check_layout(store)
    return store


def run(uri: str, entry_point: str = "main", parameters: Mapping[str, Any] | None = None,
        backend: str | None = None, env_manager: str | None = None, reuse: bool = False,
        version: str | None = None, backend_config: str | Mapping[str, Any] | None = None,
        synchronous: bool = True, parallel: int = 1, force: Sequence[str] = (),
        echo: bool = True, notify: Notify | None = None, cwd: str | Path | None = None) -> Run:
    """Run ``entry_point`` (an entry point, a script, or a pipeline) of the project at ``uri``,
    as ``reprun run`` does; the `Run`. With ``synchronous=False`` the run goes on in a thread
    and `Run.wait` waits for it. Raises the exceptions of `runner.errors` (a bad parameter:
    `ParameterError`; an invalid MLproject: `SpecError`; ...)."""
    from runner.plan import RunOptions

    env = dict(os.environ)
    config = json.dumps(dict(backend_config)) if isinstance(backend_config, Mapping) else (
        backend_config)
    options = RunOptions(
        uri=uri, cwd=Path(cwd) if cwd is not None else Path.cwd(), base_env=env,
        entry_point=entry_point, version=version,
        params={k: _text(v) for k, v in (parameters or {}).items()},
        env_manager=env_manager, backend=backend, backend_config=config, echo=echo,
        reuse=reuse, parent=env.get(PARENT_VARIABLE) or None,
    )
    store = _store()
    store.check_writable()
    say = notify or (lambda _m: None)
    if synchronous:
        return Run(_execute(options, store, say, parallel, tuple(force), None), store)
    started = threading.Event()
    ids: list[str] = []
    outcome: list[BaseException] = []

    def begun(run_id: str) -> None:
        ids.append(run_id)
        started.set()

    def work() -> None:
        try:
            _execute(options, store, say, parallel, tuple(force), begun)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            started.set()

    worker = threading.Thread(target=work, name="reprun-run", daemon=True)
    worker.start()
    started.wait()
    handle = Run(ids[0] if ids else None, store, worker, outcome)
    if not ids:
        handle.wait()  # it failed before a record existed: raise why
    return handle


def _execute(options: Any, store: RunStore, say: Notify, parallel: int,
             force: tuple[str, ...], begun: Callable[[str], None] | None) -> str:
    from runner.plan import make_plan, open_project, release_plan

    opened = open_project(options)
    spec = opened.project.spec
    if options.entry_point in spec.pipelines and options.entry_point not in spec.entry_points:
        from runner.pipeline import Policy, run_pipeline

        return run_pipeline(options, opened, Policy(parallel, force), store, say, begun).run_id
    plan = make_plan(options, opened)
    try:
        from runner.execute import execute

        control = _Begun(begun) if begun is not None else None
        return execute(plan, store, say, control).run_id
    finally:
        release_plan(plan)


class _Begun:
    """Tells the caller the run id as soon as the record exists (runner.execute.Control)."""

    def __init__(self, begun: Callable[[str], None]) -> None:
        self._begun = begun

    def begun(self, run_id: str) -> None:
        self._begun(run_id)

    def submitting(self) -> None:
        return None

    def started(self, handle: object) -> None:
        return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def runs(where: str | None = None, sort: Sequence[str] = (), limit: int | None = None) -> list[Run]:
    """The recorded runs, newest first or as ``sort`` says (``["-metrics.r2"]``), those
    ``where`` selects (``"metrics.rmse < 0.8 and status = FINISHED"``): the language of
    ``reprun runs list``; `UsageError` for a mistake in it."""
    from runner.tracking.query import list_runs

    store = _store()
    summaries, _chosen = list_runs(store, where, sort, (), limit, details=False)
    return [Run(s.run_id, store) for s in summaries]


def sweep(uri: str, parameters: Mapping[str, Any], entry_point: str = "main",
          mode: Literal["grid", "random", "optimize"] = "grid", trials: int | None = None,
          metric: str | None = None, goal: Literal["min", "max"] = "min", parallel: int = 1,
          seed: int | None = None, max_failures: int | None = None, backend: str | None = None,
          env_manager: str | None = None, reuse: bool = False, notify: Notify | None = None,
          cwd: str | Path | None = None) -> list[Run]:
    """Run a sweep as ``reprun sweep`` does and give its trials' runs, in trial order.
    ``parameters`` maps a name to a SPEC (``"0.1,0.5"``, ``"0:1:0.25"``, ``"uniform(0,1)"``)
    or a list of values; ``trials`` is the count of a random sample or a search."""
    from runner.plan import RunOptions, release_plan
    from runner.record.home import reprun_home
    from runner.sweep.run import SweepRequest, metric_name, prepare, run_sweep
    from runner.sweep.store import SweepStore

    env = dict(os.environ)
    specs = {k: _spec(v) for k, v in parameters.items()}
    options = RunOptions(uri=uri, cwd=Path(cwd) if cwd is not None else Path.cwd(),
                         base_env=env, entry_point=entry_point, env_manager=env_manager,
                         backend=backend, reuse=reuse, echo=False,
                         parent=env.get(PARENT_VARIABLE) or None)
    request = SweepRequest(options=options, specs=specs, mode=mode, count=trials, seed=seed,
                           metric=metric_name(metric) if metric else None, goal=goal,
                           parallel=parallel, max_failures=max_failures)
    store = _store()
    store.check_writable()
    plan, record = prepare(request)
    try:
        sweeps = SweepStore(reprun_home(env))
        sweeps.save(record)
        final = run_sweep(plan, record, store, sweeps, notify or (lambda _m: None))
    finally:
        release_plan(plan)
    return [Run(t.run_id, store) for t in final.trials if t.run_id is not None]


def _spec(value: Any) -> str:
    """A list of values as a SPEC (commas and backslashes escaped); a SPEC as it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ",".join(_text(v).replace("\\", "\\\\").replace(",", "\\,") for v in value)
    return "=" + _text(value)
