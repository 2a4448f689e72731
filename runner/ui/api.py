"""What the web view's endpoints answer: the same JSON as the CLI's ``--json`` (one model of a
run, two faces), and the run's own files, read only from a fixed list of the record's files.

Every function takes the store and the query of the request (name -> values) and returns the
body; a mistake of the request raises `ApiError` with the HTTP status and the one-line message
the CLI would print. Nothing from a request becomes a path: run ids are checked against the
store's id format and looked up; file names come from the record.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import ReprunError, RunNotFoundError, UsageError
from runner.record.index import RunSummary
from runner.record.store import RunStore

Query = Mapping[str, Sequence[str]]
Json = Any
RUN_ID = re.compile(r"^[0-9a-f]{4,64}$")
# A sweep id is 's' and 11 hex digits (runner.sweep.store.new_sweep_id); a prefix of 4 or more.
SWEEP_ID = re.compile(r"^s[0-9a-f]{3,11}$")
# The table asks for at most this many runs at once (it asks again for more).
MAX_LIMIT = 100_000
LOG_CHUNK = 1 << 20  # bytes of a log sent at once
MAX_COMPARE = 50
# The record's files a page may read, by the name the URL uses.
FILES = ("log", "lock", "patch", "metrics")


class ApiError(Exception):
    """A request that cannot be answered: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def one(query: Query, name: str, default: str | None = None) -> str | None:
    """The single value of a query parameter (the last one if repeated)."""
    values = query.get(name)
    return values[-1] if values else default


def many(query: Query, name: str) -> list[str]:
    """Every value of a repeatable, comma-separated query parameter."""
    return [item for value in query.get(name, ()) for item in value.split(",") if item.strip()]


def _limit(query: Query, default: int | None) -> int | None:
    text = one(query, "limit")
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def _user_error(exc: ReprunError) -> ApiError:
    status = 404 if isinstance(exc, RunNotFoundError) else 400
    return ApiError(status, exc.render())


def run_id(store: RunStore, given: str) -> str:
    """The full id of the run ``given`` (an id or a unique prefix) names; 404 otherwise."""
    if not RUN_ID.match(given):
        raise ApiError(404, f"no run matches {given!r}: a run id is 4 to 64 hexadecimal digits")
    try:
        return store.resolve_id(given)
    except RunNotFoundError as exc:
        raise ApiError(404, exc.render()) from None


def runs(store: RunStore, query: Query) -> Json:
    """``reprun runs list --json [--where W] [--sort S] [-c C] [-n N]``."""
    from runner.tracking.query import summary_json

    summaries, chosen = _listed(store, query)
    return [summary_json(s, chosen) for s in summaries]


def runs_csv(store: RunStore, query: Query) -> str:
    """``reprun runs list --csv`` with the same options."""
    from runner.tracking.query import CSV_DEFAULT, write_csv

    summaries, chosen = _listed(store, query)
    out = io.StringIO()
    write_csv(summaries, chosen or list(CSV_DEFAULT), out)
    return out.getvalue()


def _listed(store: RunStore, query: Query) -> tuple[list[RunSummary], list[str]]:
    """The runs and columns ``runs list`` gives for the query's where, sort, columns, limit."""
    from runner.tracking.query import list_runs

    try:
        return list_runs(store, one(query, "where") or None, many(query, "sort"),
                         many(query, "columns"), _limit(query, None))
    except UsageError as exc:
        raise _user_error(exc) from None


def fields(store: RunStore, _query: Query) -> Json:
    """The parameter and metric names of the store's runs, for choosing columns."""
    return store.field_names()


def changes(store: RunStore, _query: Query) -> Json:
    """A stamp that changes when a run is added or its record saved: the index and its
    write-ahead log, and the runs folder (a run the index missed)."""
    parts = []
    for path in (store.index_path, Path(f"{store.index_path}-wal"), store.runs_dir):
        try:
            info = path.stat()
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{info.st_mtime_ns}.{info.st_size}")
    return {"stamp": "/".join(parts)}


def show(store: RunStore, given: str, _query: Query) -> Json:
    """``reprun runs show --json RUN``."""
    record = store.get(run_id(store, given))
    return record.model_dump(mode="json")


def pipeline(store: RunStore, given: str, _query: Query) -> Json:
    """``reprun runs show --json RUN`` of a pipeline run: its record, with the graph, each
    step's run, status and reuse, and the steps' metrics as ``STEP.NAME``; 404 for a run that
    is not a pipeline run."""
    rid = run_id(store, given)
    record = store.get(rid)
    if record.kind != "pipeline" or record.pipeline is None:
        raise ApiError(404, f"run {rid[:8]} is not a pipeline run (it runs entry point "
                            f"{record.entry_point!r}); its record is at /api/runs/{rid[:8]}")
    return record.model_dump(mode="json")


def lineage(store: RunStore, given: str, query: Query) -> Json:
    """``reprun runs lineage --json RUN [--down]``."""
    from runner.tracking.lineage import lineage as walk

    down = one(query, "down") in ("1", "true", "yes")
    try:
        tree = walk(store, run_id(store, given), down=down)
    except RunNotFoundError as exc:  # a linked run removed since
        raise ApiError(404, exc.render()) from None
    return dataclasses.asdict(tree)


def compare(store: RunStore, query: Query) -> Json:
    """``reprun runs compare --json RUN...``."""
    from runner.tracking.compare import compare as side_by_side
    from runner.tracking.compare import parse_better

    ids = list(dict.fromkeys(run_id(store, r) for r in many(query, "runs")))
    if not ids:
        raise ApiError(400, "no runs to compare: give runs=ID,ID")
    if len(ids) > MAX_COMPARE:
        raise ApiError(400, f"at most {MAX_COMPARE} runs can be compared at once")
    try:
        given = parse_better(many(query, "better"))
    except UsageError as exc:
        raise _user_error(exc) from None
    return side_by_side([store.get(r) for r in ids], given)


def diff(store: RunStore, query: Query, env: Mapping[str, str]) -> Json:
    """``reprun diff --json A B`` of two runs of the store."""
    from runner.diff import diff_recorded
    from runner.record.export import Recorded, check_record

    ids = [run_id(store, r) for r in many(query, "runs")]
    if len(ids) != 2:
        raise ApiError(400, "diff needs two runs: runs=A,B")
    opened = []
    for rid in ids:
        record = store.get(rid)
        check_record(record, str(store.run_dir(rid) / "run.json"))
        opened.append(Recorded(record, store.run_dir(rid), "store"))
    return diff_recorded(opened[0], opened[1], env)


def history(store: RunStore, given: str, _query: Query) -> Json:
    """Every value the run reported, by metric: ``{name: {"step": [...], "value": [...]}}``
    (a value without a step gets its place in the order reported)."""
    rid = run_id(store, given)
    record = store.get(rid)
    series: dict[str, dict[str, list[Any]]] = {}
    if record.metrics_file is None:
        return series
    data = read_file(store, rid, "metrics", 0, None)[0]
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        entry = series.setdefault(item["name"], {"step": [], "value": []})
        step = item.get("step")
        entry["step"].append(step if isinstance(step, int) else len(entry["step"]))
        entry["value"].append(item.get("value"))
    return series


def record_file_name(store: RunStore, rid: str, which: str) -> str | None:
    """The name the record gives its file ``which`` (log, lock, patch, metrics); None if it
    has none."""
    if which not in FILES:
        raise ApiError(404, f"no file {which!r}: one of {', '.join(FILES)}")
    record = store.get(rid)
    names = {"log": record.log_file, "lock": record.environment.lock_file,
             "patch": record.source.patch_file, "metrics": record.metrics_file}
    return names[which]


def read_file(store: RunStore, rid: str, which: str, offset: int,
              limit: int | None) -> tuple[bytes, int]:
    """Bytes of one of the run's record files from ``offset`` (at most ``limit``), and the
    file's size. Only a plain name inside the run's own directory is opened, never through a
    symbolic link; anything else is refused (403) or missing (404)."""
    name = record_file_name(store, rid, which)
    if name is None:
        raise ApiError(404, f"run {rid[:8]} has no {which} file")
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ApiError(403, f"the record names its {which} file {name!r}, not a plain name")
    run_dir = store.run_dir(rid)
    if Path(os.path.realpath(run_dir)) != Path(os.path.realpath(store.runs_dir)) / rid:
        raise ApiError(403, f"the folder of run {rid[:8]} is outside the store")
    try:
        fd = os.open(run_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ApiError(404, f"run {rid[:8]} has no {which} file ({name})") from None
    except OSError as exc:  # ELOOP: a symbolic link
        raise ApiError(403, f"the {which} file of run {rid[:8]} is not a regular file "
                            f"({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ApiError(403, f"the {which} file of run {rid[:8]} is not a regular file")
        handle.seek(min(offset, info.st_size))
        data = handle.read() if limit is None else handle.read(limit)
    return data, info.st_size


def sweeps(store: RunStore, _query: Query) -> Json:
    """``reprun sweep list --json``."""
    from runner.sweep.store import SweepStore
    from runner.sweep.views import list_json

    return list_json(SweepStore(store.home))


def sweep(store: RunStore, given: str, query: Query) -> Json:
    """``reprun sweep show --json SWEEP [--metric METRIC:min|max]`` (an id or a unique
    prefix); 404 for an id of another form, without looking at the store."""
    from runner.sweep.store import SweepStore
    from runner.sweep.views import ranked_by, reported, show_json

    if not SWEEP_ID.match(given):
        raise ApiError(404, f"no sweep matches {given[:100]!r}: a sweep id is 's' and 11 "
                            "hexadecimal digits (4 characters or more of it)")
    try:
        record = SweepStore(store.home).get(given)
        metric = one(query, "metric")
        if metric:
            record = ranked_by(record, metric, reported(store, record))
    except (RunNotFoundError, UsageError) as exc:  # a damaged record: 500, as any other
        raise _user_error(exc) from None
    return show_json(record)
