"""``reprun reproduce PIPELINE_RUN``: every step's recorded run reproduced, in graph order.

A step's run is reproduced as ``reprun reproduce`` does (recorded source, command, parameters,
lock, backend); a step that was reused reproduces the run that made its outputs. The steps
after it read the reproduced step's outputs: in their recorded parameters and command, the
output directory of the original run is replaced by the reproduction's. Each step reports
whether its outputs came out identical to the original's. A step whose reproduction fails
stops the steps that need it (they are reported as not reproduced), not the others.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from runner.errors import NotSupportedError, ReprunError
from runner.record.export import Recorded, check_record
from runner.record.store import RunStore
from runner.record.types import RunRecord, Status
from runner.reproduce import Notify, ReproduceOptions, reproduce_recorded

RECORD = "run.json"


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


def pipeline_run(store: RunStore, target: str) -> RunRecord | None:
    """The pipeline run of the store ``target`` names, or None (another run, or a file)."""
    try:
        record = store.get(target)
    except ReprunError:  # not a run of the store: a file, or nothing (reproduce says which)
        return None
    return record if record.kind == "pipeline" and record.pipeline is not None else None


def reproduce_pipeline(pipeline: RunRecord, options: ReproduceOptions, store: RunStore,
                       notify: Notify) -> list[StepReproduction]:
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
        original = _maker(store, step.run_id)
        try:
            rec = Recorded(_rewired(original, moved), store.run_dir(original.run_id), "store")
            check_record(original, str(store.run_dir(original.run_id) / RECORD))
            new = reproduce_recorded(rec, dataclasses.replace(options, target=original.run_id,
                                                              check=True), store, notify)
        except ReprunError as exc:
            results.append(StepReproduction(step.name, original.run_id, reason=exc.render()))
            done[step.name] = False
            continue
        for old in {original.output_dir, store.get(step.run_id).output_dir}:
            moved[old] = new.output_dir
        done[step.name] = new.status is Status.FINISHED
        results.append(StepReproduction(step.name, original.run_id, new, new.reason))
    return results


def _maker(store: RunStore, run_id: str) -> RunRecord:
    """The run that made a step's outputs: the step's run, or the run it reused (and so on)."""
    record = store.get(run_id)
    seen = {record.run_id}
    while record.reused_from is not None and record.reused_from not in seen:
        record = store.get(record.reused_from)
        seen.add(record.run_id)
    return record


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
