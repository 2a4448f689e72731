"""From a pipeline's step to the plan of its run: the values with ``{name}`` and
``{STEP.outputs}`` replaced, the options of the pipeline run with the step's own, and where a
finished step's outputs are.

A step that was reused took copies of an earlier run's outputs; the steps after it read the
outputs of the run that made them (the origin), so that their parameter values, and with them
their reuse keys, stay the same from one pipeline run to the next when nothing changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from runner.errors import ReprunError, StepError
from runner.plan import RunOptions
from runner.record.store import RunStore
from runner.record.types import RunRecord
from runner.spec.pipelines import step_reference, substitute
from runner.spec.types import PipelineStep, placeholders


def step_values(name: str, step: PipelineStep, params: Mapping[str, str],
                outputs: Mapping[str, Path], runs: Mapping[str, str]) -> dict[str, str]:
    """The step's parameter values; `StepError` when one names a file that a step before it
    FINISHED without writing (``runs``: step -> its run id)."""
    values: dict[str, str] = {}
    for param, written in step.parameters.items():
        value = substitute(written, params, outputs)
        refs = [r for f in placeholders(written) if (r := step_reference(f)) is not None]
        if refs and not Path(value).exists():
            ref = refs[-1]
            try:
                missing = Path(value).relative_to(outputs[ref]).as_posix()
            except ValueError:
                missing = value
            raise StepError(
                f"step '{name}': parameter '{param}' ({written}) names '{missing}', which step "
                f"'{ref}' (run {runs.get(ref, '?')[:8]}) FINISHED without writing",
                hint=f"make '{ref}' write {missing} into REPRUN_OUTPUT_DIR, or fix the path in "
                     "the MLproject")
        values[param] = value
    return values


def step_options(base: RunOptions, name: str, step: PipelineStep, values: Mapping[str, str],
                 project_dir: Path, parent: str, reuse: bool, echo: bool) -> RunOptions:
    """The options of a step's run: the pipeline run's, with the step's entry point, values
    (relative paths relative to the project), backend and backend config."""
    config: str | None
    if isinstance(step.backend_config, dict):
        config = json.dumps(step.backend_config)
    elif step.backend_config is not None:
        config = step.backend_config
    elif step.backend is None or step.backend == base.backend:
        config = base.backend_config
    else:
        config = None
    tracking = base.tracking
    if tracking is not None and tracking.parent_run_id is not None and tracking.run_name is None:
        tracking = dataclasses.replace(tracking, run_name=f"{name}-{parent[:8]}")
    return dataclasses.replace(
        base, tracking=tracking, entry_point=step.entry_point, params=dict(values), cwd=project_dir,
        backend=step.backend or base.backend, backend_config=config, reuse=reuse,
        parent=parent, resolve_early=False, echo=echo, progress_live=False, detach=False)


def absolute_config(options: RunOptions) -> RunOptions:
    """A --backend-config file named relative to where reprun started, made absolute: the steps
    run with the project directory as their base."""
    config = options.backend_config
    if config is None or config.lstrip().startswith("{"):
        return options
    path = options.cwd / config
    return dataclasses.replace(options, backend_config=str(path)) if path.is_file() else options


def origin_outputs(store: RunStore, record: RunRecord, digest_cache: Path) -> Path:
    """Where the steps after ``record``'s step read its outputs: the run that made them when
    they are still the same there, else the step's own output directory."""
    own = Path(record.output_dir)
    origin = record
    seen = {record.run_id}
    while origin.reused_from is not None and origin.reused_from not in seen:
        seen.add(origin.reused_from)
        try:
            origin = store.load(origin.reused_from)
        except (ReprunError, OSError, ValueError):
            return own
    if origin is record or not _same_outputs(origin, record, digest_cache):
        return own
    return Path(origin.output_dir)


def _same_outputs(origin: RunRecord, record: RunRecord, digest_cache: Path) -> bool:
    from runner.tracking.fingerprint import fingerprint_paths
    from runner.tracking.statcache import opened

    wanted = {o.path: o.digest for o in record.outputs}
    if {o.path: o.digest for o in origin.outputs} != wanted or None in wanted.values():
        return False
    source = Path(origin.output_dir)
    try:
        with opened(digest_cache, racy_s=0) as cache:
            prints = fingerprint_paths([source / p for p in wanted], cache)
    except OSError:
        return False
    return all(p.digest == d for p, d in zip(prints, wanted.values(), strict=True))
