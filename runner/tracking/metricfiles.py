"""The metrics a run left in files: the ``REPRUN_METRICS`` stream (JSON lines) and the metrics
files of its output directory (``metrics.json``/``metrics.yaml`` and the declared ones); and the
rules every source shares for names, numbers and steps. See `runner.tracking.metrics`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from runner.nofollow import open_inside

if TYPE_CHECKING:
    from runner.tracking.metrics import Collector

STREAM_VARIABLE = "REPRUN_METRICS"
DEFAULT_FILES = ("metrics.json", "metrics.yaml", "metrics.yml")
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_LEAVES = 10_000
NAME_RULE = "1 to 250 printable characters"
MAX_LINE_BYTES = 64 * 1024
CHUNK_BYTES = 4 * 1024 * 1024


def chunks(handle: IO[bytes]) -> Iterator[tuple[int, str]]:
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


def read_stream(collector: Collector, path: Path, source: str = "stream") -> None:
    """The JSON lines the run appended to ``REPRUN_METRICS`` (or reprun's MLflow endpoint)."""
    try:  # the stream's folder is the container's to write in: a link is not followed
        opened = open_inside(path.parent.parent, f"{path.parent.name}/{path.name}")
    except OSError as exc:
        collector.problems.add("stream: not a plain file", f"{STREAM_VARIABLE}: "
                               f"{exc.strerror}; not read")
        return
    if opened is None:
        return
    with opened as handle:
        for first_line, text in chunks(handle):
            for number, line in enumerate(text.splitlines(), first_line):
                if line.strip():
                    _stream_line(collector, number, line, source)


def _stream_line(collector: Collector, number: int, line: str, source: str) -> None:
    where = f"{STREAM_VARIABLE if source == 'stream' else source} line {number}"
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
            collector.problems.add("stream: bad name", f"{where}: the name {shown(name)} is "
                                   f"not a usable metric name ({NAME_RULE}); ignored")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            collector.problems.add("stream: not a number", f"{where}: '{name}' is "
                                   f"{shown(value)}, not a number; ignored")
        else:
            collector.add(name, as_float(value), step, source)


def _stream_step(collector: Collector, where: str, value: Any) -> int | None:
    if value is None:
        return None
    step = step_of(value)
    if step is None:
        collector.problems.add("stream: bad step", f"{where}: the step {shown(value)} is not a "
                               "whole number >= 0; the value is kept without it")
    return step


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
        collector.problems.add("file: not a mapping", f"{name}: holds {shown(data)}, not a "
                               "mapping of names to values; not read")
        return
    step = data.get("step")
    step_value = step_of(step) if "step" in data and not isinstance(step, dict) else None
    leaves = list(_flatten(data, ""))
    if step_value is not None:
        leaves = [(k, v) for k, v in leaves if k != "step"]
    for key, value in leaves[:MAX_LEAVES]:
        if not usable_name(key):
            collector.problems.add(f"file {name}: bad name", f"{name}: the name {shown(key)} "
                                   f"is not a usable metric name ({NAME_RULE}); ignored")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            collector.problems.add(f"file {name}: not a number", f"{name}: '{key}' is "
                                   f"{shown(value)}, not a number; ignored")
        else:
            collector.add(key, as_float(value), step_value, f"file:{name}")
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


def as_float(value: float) -> float:
    """A JSON number as a float; an integer too large for one is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def parse_number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def step_of(value: Any) -> int | None:
    """A whole number >= 0 (given as a number or as text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = parse_number(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")  # repr: no control chars
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return repr(value)
