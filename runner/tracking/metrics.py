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
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from runner.nofollow import open_inside
from runner.record.types import MetricSummary, RunRecord
from runner.spec.types import MetricsSpec

if TYPE_CHECKING:
    from runner.tracking.patterns import BoundedPatterns

STREAM_VARIABLE = "REPRUN_METRICS"
STREAM_DIR = "stream"
STREAM_FILE = "metrics.jsonl"
HISTORY_FILE = "metrics.jsonl"
SPEC_DIR = "spec"  # copies of the MLproject and environment files beside the record
DEFAULT_FILES = ("metrics.json", "metrics.yaml", "metrics.yml")
MAX_NAMES = 1000
MAX_HISTORY = 100_000
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_LEAVES = 10_000
SHOWN_PER_KIND = 3
NAME_RULE = "1 to 250 printable characters"

NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# Guild AI's output-scalar convention, also indented: "loss: 0.31", "loss: 0.31 (step 12)".
KEY_VALUE = (
    rf"^[ \t]*([A-Za-z_][\w.\-/]{{0,99}}):[ \t]+({NUMBER}|[-+]?(?:nan|inf))"
    r"(?:[ \t]+\((?:step[ \t]+)?(\d+)\))?[ \t\r]*$"
)  # compiled only when a run declares stdout: true (this module is imported by every run)
CHUNK_BYTES = 4 * 1024 * 1024
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
            for first_line, text in _chunks(handle):
                _pattern_lines(collector, first_line, text, patterns)
        else:
            state = _Convention(parameters)
            for _first_line, text in _chunks(handle):
                state.read(collector, text)


def _chunks(handle: IO[bytes]) -> Iterator[tuple[int, str]]:
    """Whole lines of text a few MiB at a time, with the number of the first; a line longer
    than MAX_LINE_BYTES that spans chunks (binary output, a progress bar) is skipped whole."""
    pending, skipping, line = b"", False, 1
    while data := handle.read(CHUNK_BYTES):
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                continue
            data, skipping, line = data[cut + 1:], False, line + 1
        data = pending + data
        cut = data.rfind(b"\n") + 1
        complete, pending = data[:cut], data[cut:]
        if len(pending) > MAX_LINE_BYTES:
            pending, skipping = b"", True
        if complete:
            text = complete.decode("utf-8", "replace")
            yield line, text
            line += text.count("\n")
    if pending and not skipping:
        yield line, pending.decode("utf-8", "replace")


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
        value = _number(value_text)
        if value is None:
            number = first_line + text.count("\n", 0, start)
            collector.problems.add(f"stdout: '{name}' not a number",
                                   f"output line {number}: the pattern of '{name}' matched "
                                   f"{value_text!r}, which is not a number; ignored")
            continue
        step = _step(match.group("step")) if "step" in match.re.groupindex else None
        collector.add(name, value, step, "stdout")


# -- the REPRUN_METRICS stream ------------------------------------------------------------------

def read_stream(collector: Collector, path: Path) -> None:
    """The JSON lines the run appended to ``REPRUN_METRICS``."""
    try:  # the stream's folder is the container's to write in: a link is not followed
        opened = open_inside(path.parent.parent, f"{path.parent.name}/{path.name}")
    except OSError as exc:
        collector.problems.add("stream: not a plain file", f"{STREAM_VARIABLE}: "
                               f"{exc.strerror}; not read")
        return
    if opened is None:
        return
    with opened as handle:
        for first_line, text in _chunks(handle):
            for number, line in enumerate(text.splitlines(), first_line):
                if line.strip():
                    _stream_line(collector, number, line)


def _stream_line(collector: Collector, number: int, line: str) -> None:
    where = f"{STREAM_VARIABLE} line {number}"
    try:
        item = json.loads(line)
    except (ValueError, RecursionError):
        collector.problems.add("stream: not JSON", f"{where}: not a JSON object, ignored")
        return
    if not isinstance(item, dict):
        collector.problems.add("stream: not an object", f"{where}: not a JSON object, ignored")
        return
    step = _stream_step(collector, where, item.get("step"))
    if "name" in item and "value" in item:
        pairs: Iterable[tuple[Any, Any]] = [(item["name"], item["value"])]
    else:
        pairs = [(k, v) for k, v in item.items() if k not in ("step", "timestamp")]
    for name, value in pairs:
        if not usable_name(name):
            collector.problems.add("stream: bad name", f"{where}: the name {_shown(name)} is "
                                   f"not a usable metric name ({NAME_RULE}); ignored")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            collector.problems.add("stream: not a number", f"{where}: '{name}' is "
                                   f"{_shown(value)}, not a number; ignored")
        else:
            collector.add(name, _as_float(value), step, "stream")


def _stream_step(collector: Collector, where: str, value: Any) -> int | None:
    if value is None:
        return None
    step = _step(value)
    if step is None:
        collector.problems.add("stream: bad step", f"{where}: the step {_shown(value)} is not a "
                               "whole number >= 0; the value is kept without it")
    return step


# -- metrics files ------------------------------------------------------------------------------

def read_files(collector: Collector, output_dir: Path, declared: Iterable[str]) -> None:
    """metrics.json / metrics.yaml in the output directory, and the declared files."""
    seen: set[Path] = set()
    for name in (*DEFAULT_FILES, *declared):
        path = output_dir / name
        if path in seen:
            continue
        seen.add(path)
        try:
            handle = open_inside(output_dir, name)
        except OSError as exc:  # a link (never followed out of the directory), a FIFO...
            collector.problems.add("file: not a plain file", f"{name}: {exc.strerror}; not "
                                   "read")
            continue
        if handle is None:
            if name not in DEFAULT_FILES:
                collector.problems.add("file: missing", f"the metrics file {name} named by the "
                                       "MLproject was not written in REPRUN_OUTPUT_DIR")
            continue
        with handle:
            _read_file(collector, path, name, handle)


def _read_file(collector: Collector, path: Path, name: str, handle: IO[bytes]) -> None:
    size = os.fstat(handle.fileno()).st_size
    if size > MAX_FILE_BYTES:
        collector.problems.add("file: too large", f"{name}: {size} bytes, more than "
                               f"{MAX_FILE_BYTES} for a metrics file; not read")
        return
    try:
        data = _parse(path, handle.read(MAX_FILE_BYTES + 1))
    except Exception as exc:  # any parser error means "not readable"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        collector.problems.add("file: unreadable", f"{name}: not valid "
                               f"{'JSON' if path.suffix == '.json' else 'YAML'} ({reason}); "
                               "not read")
        return
    if not isinstance(data, dict):
        collector.problems.add("file: not a mapping", f"{name}: holds {_shown(data)}, not a "
                               "mapping of names to values; not read")
        return
    step = data.get("step")
    step_value = _step(step) if "step" in data and not isinstance(step, dict) else None
    leaves = list(_flatten(data, ""))
    if step_value is not None:
        leaves = [(k, v) for k, v in leaves if k != "step"]
    for key, value in leaves[:MAX_LEAVES]:
        if not usable_name(key):
            collector.problems.add(f"file {name}: bad name", f"{name}: the name {_shown(key)} "
                                   f"is not a usable metric name ({NAME_RULE}); ignored")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            collector.problems.add(f"file {name}: not a number", f"{name}: '{key}' is "
                                   f"{_shown(value)}, not a number; ignored")
        else:
            collector.add(key, _as_float(value), step_value, f"file:{name}")
    if len(leaves) > MAX_LEAVES:
        collector.problems.add("file: too many values", f"{name}: {len(leaves)} values; only "
                               f"the first {MAX_LEAVES} are read")


def _parse(path: Path, raw: bytes) -> Any:
    text = raw.decode("utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml  # only for a YAML metrics file

    return yaml.safe_load(text)


def _flatten(data: Mapping[Any, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def usable_name(name: object) -> bool:
    """Whether ``name`` can name a metric: text of 1 to 250 printable characters."""
    return (isinstance(name, str) and bool(name.strip()) and len(name) <= 250
            and name.isprintable())


# -- values -------------------------------------------------------------------------------------

def _as_float(value: float) -> float:
    """A JSON number as a float; an integer too large for one is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _step(value: Any) -> int | None:
    """A whole number >= 0 (given as a number or as text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _number(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")  # repr: no control chars
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return repr(value)


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
