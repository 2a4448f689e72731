"""Metrics a run reports without importing anything, summarised into its record.

A run reports a value by any of three means, all recorded the same way:

- a **metrics file** in ``REPRUN_OUTPUT_DIR``: ``metrics.json`` / ``metrics.yaml`` / ``metrics.yml``
  (as DVC users write them) and any file the entry point's ``metrics.files`` names; nested
  mappings become dotted names, a top-level integer ``step`` is the step of the others;
- the **stream**: ``REPRUN_METRICS`` names a file the run may append JSON lines to,
  ``{"name": "loss", "value": 0.31, "step": 12}`` (or ``{"loss": 0.31, "step": 12}``);
- **printed lines**, when ``metrics.stdout`` asks: ``name: value`` lines (Guild AI's
  convention, ``(step N)`` after the value gives the step, a ``step: N`` line sets it for the lines
  that follow, names of parameters are ignored), or one regular expression per metric.

Everything is read once the command has ended, from the files the run left (the log for printed
lines), so that capture costs the streaming of output nothing. Each value goes to
``metrics.jsonl`` beside the record; the record keeps per name the last value, its step, the
minimum, the maximum and the count. Bad input (broken JSON, text where a number belongs, NaN,
a flood of names or values) is skipped with a warning, never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from runner.record.types import MetricSummary, RunRecord
from runner.spec.types import MetricsSpec
from runner.tracking.metricfiles import (
    chunks,
    parse_number,
    read_files,
    read_stream,
    step_of,
)

if TYPE_CHECKING:
    from runner.tracking.patterns import BoundedPatterns

STREAM_DIR = "stream"
STREAM_FILE = "metrics.jsonl"
MLFLOW_STREAM = "mlflow.jsonl"  # what the project logged with mlflow (mlflow.endpoint)
HISTORY_FILE = "metrics.jsonl"
SPEC_DIR = "spec"  # copies of the MLproject and environment files beside the record
MAX_NAMES = 1000
MAX_HISTORY = 100_000
SHOWN_PER_KIND = 3

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# Guild AI's output-scalar convention, also indented: "loss: 0.31", "loss: 0.31 (step 12)".
KEY_VALUE = (
    rf"^[ \t]*([A-Za-z_][\w.\-/]{{0,99}}):[ \t]+({NUMBER}|[-+]?(?:nan|inf))"
    r"(?:[ \t]+\((?:step[ \t]+)?(\d+)\))?[ \t\r]*$"
)  # compiled only when a run declares stdout: true (this module is imported by every run)
HISTORY_BUFFER = 10_000
Notify = Callable[[str], None]


def stream_path(run_dir: Path) -> Path:
    """The file ``REPRUN_METRICS`` names on this machine (its directory is created)."""
    directory = run_dir / STREAM_DIR
    directory.mkdir(exist_ok=True)
    return directory / STREAM_FILE


class _Summary:
    __slots__ = ("count", "last", "max", "min", "quoted", "step")

    def __init__(self, name: str, value: float, step: int | None) -> None:
        self.quoted = json.dumps(name)
        self.last, self.step, self.min, self.max, self.count = value, step, value, value, 1


class _Problems:
    """Warnings grouped by kind: the first few are shown, the rest counted."""

    def __init__(self) -> None:
        self.shown: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.shown.setdefault(kind, [])
        if len(examples) < SHOWN_PER_KIND:
            examples.append(message)

    def once(self, kind: str, message: str) -> None:
        """A warning that says itself what follows: shown once, not counted."""
        if kind not in self.shown:
            self.shown[kind] = [message]
            self.counts[kind] = 1

    def lines(self) -> Iterator[str]:
        for kind, examples in self.shown.items():
            yield from examples
            more = self.counts[kind] - len(examples)
            if more > 0:
                yield f"{kind}: {more} more like this"


class Collector:
    """Summaries of every value added, and the history written as it comes."""

    def __init__(self, history: IO[str]) -> None:
        self.history = history
        self.summaries: dict[str, _Summary] = {}
        self.problems = _Problems()
        self.kept = 0
        self._buffer: list[str] = []
        self._sources: dict[str, str] = {}

    def add(self, name: str, value: float, step: int | None, source: str) -> None:
        """One value (this is the inner loop of reading a long log: kept flat)."""
        if value - value != 0:  # nan or inf
            self.problems.add(f"{source}: non-finite values",
                              f"{source}: metric '{name}' is {value}, ignored")
            return
        summary = self.summaries.get(name)
        if summary is None:
            if len(self.summaries) >= MAX_NAMES:
                self.problems.once("too many names", f"more than {MAX_NAMES} metric names: "
                                   f"'{name}' ({source}) and later new names are ignored")
                return
            summary = self.summaries[name] = _Summary(name, value, step)
        else:
            summary.last, summary.step = value, step
            summary.count += 1
            if value < summary.min:
                summary.min = value
            elif value > summary.max:
                summary.max = value
        if self.kept >= MAX_HISTORY:
            self.problems.once("history full", f"more than {MAX_HISTORY} values: the later ones "
                               f"count in the summaries but are not kept in {HISTORY_FILE}")
            return
        self.kept += 1
        quoted = self._sources.get(source) or self._sources.setdefault(source, json.dumps(source))
        self._buffer.append(f'{{"name": {summary.quoted}, "value": {value!r}, "step": '
                            f'{"null" if step is None else step}, "source": {quoted}}}\n')
        if len(self._buffer) >= HISTORY_BUFFER:
            self.flush()

    def flush(self) -> None:
        self.history.write("".join(self._buffer))
        self._buffer.clear()

    def result(self, better: Mapping[str, Literal["min", "max"]]) -> dict[str, MetricSummary]:
        return {name: MetricSummary(last=s.last, step=s.step, min=s.min, max=s.max,
                                    count=s.count, better=better.get(name))
                for name, s in self.summaries.items()}


def collect(
    run_dir: Path, output_dir: Path, log_file: Path, spec: MetricsSpec | None,
    parameters: Iterable[str], notify: Notify,
) -> tuple[dict[str, MetricSummary], str | None]:
    """Read what the run reported; the summaries by name and the history file (None if empty)."""
    history = run_dir / HISTORY_FILE
    with history.open("w", encoding="utf-8") as handle:
        collector = Collector(handle)
        if spec is not None and spec.stdout:
            read_output(collector, log_file, spec.stdout, frozenset(parameters))
        read_stream(collector, run_dir / STREAM_DIR / STREAM_FILE)
        read_stream(collector, run_dir / STREAM_DIR / MLFLOW_STREAM, "mlflow")
        read_files(collector, output_dir, spec.files if spec is not None else [])
        collector.flush()
    for line in collector.problems.lines():
        notify(f"warning: metrics: {line}")
    if not collector.summaries:
        history.unlink()
        return {}, None
    return collector.result(spec.better if spec is not None else {}), HISTORY_FILE


# -- printed lines ------------------------------------------------------------------------------

def read_output(collector: Collector, log_file: Path, stdout: bool | Mapping[str, str],
                parameters: frozenset[str]) -> None:
    """Metrics from the lines of the run's output (its log), by convention or by pattern."""
    if not log_file.is_file():
        return
    with log_file.open("rb") as handle:
        if isinstance(stdout, Mapping):
            from runner.tracking.patterns import BoundedPatterns

            patterns = BoundedPatterns(stdout, lambda name, message: collector.problems.once(
                f"stdout: '{name}' too slow", message))
            for first_line, text in chunks(handle):
                _pattern_lines(collector, first_line, text, patterns)
        else:
            state = _Convention(parameters)
            for _first_line, text in chunks(handle):
                state.read(collector, text)


class _Convention:
    """``name: value`` lines, ``(step N)`` after the value; ``step: N`` sets the step."""

    def __init__(self, parameters: frozenset[str]) -> None:
        self.parameters = parameters
        self.step: int | None = None
        self.pattern = re.compile(KEY_VALUE, re.IGNORECASE | re.MULTILINE)

    def read(self, collector: Collector, text: str) -> None:
        add, parameters, step = collector.add, self.parameters, self.step
        for name, value, step_text in self.pattern.findall(text):
            if name == "step":
                step = int(float(value)) if _is_whole(value) else step
            elif name not in parameters:
                add(name, float(value), int(step_text) if step_text else step, "stdout")
        self.step = step


def _is_whole(text: str) -> bool:
    try:
        return float(text).is_integer()
    except (ValueError, OverflowError):
        return False


def _pattern_lines(collector: Collector, first_line: int, text: str,
                   patterns: BoundedPatterns) -> None:
    """Each pattern's matches in a chunk of whole lines, in the order of the lines."""
    found = patterns.matches(text, first_line)
    if patterns.count > 1:
        found.sort(key=lambda item: item[0])
    for start, name, match in found:
        named = "value" in match.re.groupindex
        value_text = match.group("value") if named else match.group(1)
        value = parse_number(value_text)
        if value is None:
            number = first_line + text.count("\n", 0, start)
            collector.problems.add(f"stdout: '{name}' not a number",
                                   f"output line {number}: the pattern of '{name}' matched "
                                   f"{value_text!r}, which is not a number; ignored")
            continue
        step = step_of(match.group("step")) if "step" in match.re.groupindex else None
        collector.add(name, value, step, "stdout")


# -- the REPRUN_METRICS stream ------------------------------------------------------------------


# -- metrics files ------------------------------------------------------------------------------


# -- values -------------------------------------------------------------------------------------


def with_metrics(record: RunRecord, run_dir: Path, spec: MetricsSpec | None,
                 notify: Notify) -> RunRecord:
    """The record with what its run reported; a failure to read or write is a warning."""
    try:
        metrics, history = collect(run_dir, Path(record.output_dir), run_dir / record.log_file,
                                   spec, record.parameters, notify)
    except OSError as exc:  # a full disk, a file made unreadable: the run's record comes first
        notify(f"warning: metrics: not recorded: {exc}")
        return record
    return record.model_copy(update={"metrics": metrics, "metrics_file": history})


def completed_later(record: RunRecord, run_dir: Path, notify: Notify) -> RunRecord:
    """The metrics of a run completed after reprun left it (a detached Kubernetes run, whose
    log came back): the entry point's declaration is read from the MLproject kept with the run."""
    spec = None
    kept = run_dir / SPEC_DIR / Path(record.project.spec_file).name \
        if record.project.spec_file else None
    if kept is not None and kept.is_file():
        from runner.errors import SpecError
        from runner.spec.types import MLProject
        from runner.spec.validate import validate_file

        try:
            dump, _warnings = validate_file(kept, "mlproject", strict=False)
        except SpecError as exc:
            notify(f"warning: metrics: the MLproject kept with the run is not valid: {exc}")
        else:
            entry = MLProject.from_dump(dump).entry_points.get(record.entry_point)
            spec = entry.metrics if entry is not None else None
    return with_metrics(record, run_dir, spec, notify)
