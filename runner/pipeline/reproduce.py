"""``reprun reproduce PIPELINE_RUN``: every step's recorded run reproduced, in graph order.

A step's run is reproduced as ``reprun reproduce`` does (recorded source, command, parameters,
lock, backend); a step that was reused reproduces the run that made its outputs. The steps
after it read the reproduced step's outputs: in their recorded parameters and command, the
output directory of the original run is replaced by the reproduction's. Each step reports
whether its outputs came out identical to the original's. A step whose reproduction fails
stops the steps that need it (they are reported as not reproduced), not the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import NotSupportedError, ReprunError
from runner.record.export import Recorded, check_record, open_run
from runner.record.store import RunStore
from runner.record.types import RunRecord, Status
from runner.reproduce import Notify, ReproduceOptions, reproduce_recorded

RECORD = "run.json"  # as runner.record.store.RECORD


@dataclass(frozen=True)
class StepReproduction:
    """One step: the run reproduced, and the new run (None when it was not reproduced)."""

    step: str
    original: str | None
    record: RunRecord | None = None
    reason: str | None = None

    @property
    def identical(self) -> bool:
        rep = self.record.reproduction if self.record is not None else None
        return rep is not None and rep.check is not None and rep.check.result == "identical"


Lookup = Callable[[str], Recorded]


def open_pipeline(target: str, store: RunStore,
                  stack: contextlib.ExitStack) -> tuple[RunRecord, Lookup] | None:
    """The pipeline run ``target`` names (a run of the store, or a file made by 'reprun
    export' that carries its steps' runs) and how to open its steps' runs; None for another
    run (or nothing: reproduce says which)."""
    path = Path(target).expanduser()
    if not path.is_file():
        try:
            record = store.get(target)
        except ReprunError:
            return None
        if record.kind != "pipeline" or record.pipeline is None:
            return None
        return record, lambda rid: store_run(store, rid)
    rec = open_run(target, store, stack)
    if rec.record.kind != "pipeline" or rec.record.pipeline is None:
        return None
    return rec.record, lambda rid: bundled_run(rec, rid)


def store_run(store: RunStore, run_id: str) -> Recorded:
    record = store.get(run_id)
    check_record(record, str(store.run_dir(record.run_id) / RECORD))
    return Recorded(record, store.run_dir(record.run_id), "store")


def reproduce_pipeline(pipeline: RunRecord, options: ReproduceOptions, store: RunStore,
                       lookup: Lookup, notify: Notify) -> list[StepReproduction]:
    """Reproduce every step of ``pipeline`` in graph order; one result per step."""
    assert pipeline.pipeline is not None
    moved: dict[str, str] = {}  # original output directory -> the reproduction's
    done: dict[str, bool] = {}  # step -> reproduced and FINISHED
    results = []
    for step in pipeline.pipeline.steps:
        stopped = next((n for n in step.needs if not done.get(n)), None)
        if step.run_id is None or stopped is not None:
            why = (f"step '{stopped}' was not reproduced or did not finish" if stopped
                   else "it never ran")
            results.append(StepReproduction(step.name, step.run_id, reason=why))
            done[step.name] = False
            continue
        try:
            ran = maker(lookup, step.run_id)
            original = ran.record
            rec = Recorded(_rewired(original, moved), ran.directory, ran.origin)
            new = reproduce_recorded(rec, dataclasses.replace(options, target=original.run_id,
                                                              check=True), store, notify)
        except ReprunError as exc:
            results.append(StepReproduction(step.name, step.run_id, reason=exc.render()))
            done[step.name] = False
            continue
        for old in {original.output_dir, lookup(step.run_id).record.output_dir}:
            moved[old] = new.output_dir
        done[step.name] = new.status is Status.FINISHED
        results.append(StepReproduction(step.name, original.run_id, new, new.reason))
    return results


def maker(lookup: Lookup, run_id: str) -> Recorded:
    """The run that made a step's outputs: the step's run, or the run it reused (and so on)."""
    rec = lookup(run_id)
    seen = {rec.record.run_id}
    while rec.record.reused_from is not None and rec.record.reused_from not in seen:
        rec = lookup(rec.record.reused_from)
        seen.add(rec.record.run_id)
    return rec


def bundled_run(rec: Recorded, run_id: str) -> Recorded:
    """A step's run carried by the export ``rec`` was read from (under ``runs/RUN_ID/``)."""
    from runner.errors import RunNotFoundError
    from runner.record.export import read_record

    if not re.fullmatch(r"[0-9a-f]{4,64}", run_id):
        raise RunNotFoundError(f"'{rec.origin}' names step run {run_id[:70]!r}, not a run id")
    directory = rec.directory / "runs" / run_id
    if not (directory / RECORD).is_file():
        raise RunNotFoundError(f"'{rec.origin}' does not carry run {run_id[:8]} of a step",
                               hint="export the pipeline run again with this reprun")
    return Recorded(read_record(directory / RECORD, f"{rec.origin}:runs/{run_id}/{RECORD}"),
                    directory, rec.origin)


def _rewired(record: RunRecord, moved: Mapping[str, str]) -> RunRecord:
    """``record`` with the output directories of reproduced steps replaced by their
    reproductions' in its parameter values and command."""
    if not moved:
        return record
    params = {name: _moved(value, moved) for name, value in record.parameters.items()}
    command = record.command
    for old, new in moved.items():
        if old in command and (shlex.quote(old) != old or shlex.quote(new) != new):
            raise NotSupportedError(
                f"run {record.run_id[:8]}'s command names '{old}', which needs quoting; its "
                "step cannot be wired to a reproduced step's outputs",
                hint=f"reproduce the steps' runs one by one (reprun reproduce {record.run_id[:8]})")
        command = command.replace(old, new)
    return record.model_copy(update={"parameters": params, "command": command})


def _moved(value: str, moved: Mapping[str, str]) -> str:
    for old, new in moved.items():
        if value == old or value.startswith(old.rstrip("/") + "/"):
            return new + value[len(old):]
    return value
