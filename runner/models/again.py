"""``models reproduce``: the run that made a version, run again from its record, and the model it
makes compared with the version (same digest or not, and how the metrics moved)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runner.errors import ReprunError, RunNotFoundError, UsageError
from runner.frozen import frozen
from runner.models.register import collect
from runner.models.store import ModelStore
from runner.models.types import ModelVersion
from runner.record.store import RunStore
from runner.record.types import RunRecord

Notify = Callable[[str], None]


@frozen
class Outcome:
    version: ModelVersion
    original: str  # the run reproduced
    run_id: str  # the new run
    digest: str | None  # what the new run made; None when it made nothing usable
    why: str | None  # why there is no digest
    metrics: tuple[tuple[str, float | None, float | None], ...]  # name, version's, new

    @property
    def identical(self) -> bool:
        return self.digest == self.version.digest

    def lines(self) -> list[str]:
        head = f"{self.version.name} version {self.version.version}"
        if self.identical:
            lines = [f"{head} reproduced identically by run {self.run_id[:12]} "
                     f"({self.digest})"]
        elif self.digest is None:
            lines = [f"{head} NOT reproduced by run {self.run_id[:12]}: {self.why}"]
        else:
            lines = [f"{head} NOT reproduced identically by run {self.run_id[:12]}: digest "
                     f"{self.digest}, the version's {self.version.digest}"]
        for name, old, new in self.metrics:
            change = ("" if old is None or new is None
                      else " (same)" if old == new else f" ({new - old:+g})")
            lines.append(f"metric {name}: {_num(old)} -> {_num(new)}{change}")
        return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def source_run(version: ModelVersion, runs: RunStore) -> str:
    """The first run of the version still in the store."""
    for run_id in version.runs:
        try:
            return runs.resolve_id(run_id)
        except RunNotFoundError:
            continue
    raise UsageError(f"{version.name} version {version.version}: its run "
                     f"{version.run_id[:12]} is no longer in the store",
                     hint="reproduce it from an export of the run ('reprun reproduce FILE')")


def reproduce_version(store: ModelStore, version: ModelVersion, runs: RunStore,
                      allow_drift: bool, notify: Notify, echo: bool = True) -> Outcome:
    from runner.reproduce import ReproduceOptions, reproduce

    original = source_run(version, runs)
    runs.check_writable()
    options = ReproduceOptions(target=original, cwd=Path.cwd(), base_env=dict(os.environ),
                               allow_drift=allow_drift, echo=echo)
    _old, record = reproduce(options, runs, notify)
    digest, why = _made(record, version)
    names = sorted(set(version.metrics) | set(record.metrics))
    metrics = tuple((n, version.metrics.get(n),
                     record.metrics[n].last if n in record.metrics else None) for n in names)
    return Outcome(version, original, record.run_id, digest, why, metrics)


def _made(record: RunRecord, version: ModelVersion) -> tuple[str | None, str | None]:
    try:
        return collect(record, version.path).digest, None
    except ReprunError as exc:
        return None, exc.message
