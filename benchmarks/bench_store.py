"""Benchmark: `reprun runs list` (newest, sorted by a metric, filtered) and the index rebuild,
with many runs in the store.

Usage: python benchmarks/bench_store.py [N_RUNS] [--repeat R]   (default 100000 runs, 5 repeats)

Fills a temporary REPRUN_HOME with N finished runs quickly: one record is made through the
store's own types, the others are that record's JSON with their id, time, parameter and metric
changed, written without a sync, and the index is filled through the store's own rows. Every
tenth run has no ``rmse`` metric (such runs are listed last by --sort). Then it times the CLI
commands a person types (medians of R, each command in turn within every repetition), and
``reprun runs reindex`` once. Prints each figure beside its goal; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.record.host import host_info
from runner.record.index import COLUMNS
from runner.record.store import RECORD, RunStore
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    MetricSummary,
    ProjectInfo,
    RunRecord,
    SourceInfo,
    Status,
)

LIST_GOAL = 0.15  # seconds, at 100,000 runs
REINDEX_GOAL = 5.0


def template() -> RunRecord:
    began = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return RunRecord(
        run_id="0" * 32, status=Status.FINISHED, exit_code=0, entry_point="main",
        parameters={"alpha": "0"}, command="python train.py 0",
        project=ProjectInfo(uri="proj", path="/proj", name="proj"), source=SourceInfo(),
        environment=EnvironmentInfo(kind="none", manager="local"),
        backend=BackendInfo(name="local"), host=host_info(), output_dir="/out",
        started_at=began, ended_at=began + timedelta(seconds=3), duration_s=3.0,
        metrics={"rmse": MetricSummary(last=0.5, min=0.5, max=0.5, count=1)},
    )


def fill(home: Path, count: int) -> list[str]:
    """``count`` finished runs: their records (the template's JSON with its id, times, parameter
    and metric changed) and their index rows, as `runner.record.index.upsert` writes them."""
    store = RunStore(home)
    store.runs_dir.mkdir(parents=True)
    data = template().model_dump(mode="json")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids, runs, params, metrics = [], [], [], []
    for number in range(count):
        run_id = f"{number:08x}{'b' * 24}"
        began = start + timedelta(seconds=number)
        alpha = str(number % 100)
        rmse = (number * 7919 % 1000) / 1000
        data.update(run_id=run_id, started_at=began.isoformat(),
                    ended_at=(began + timedelta(seconds=3)).isoformat(),
                    parameters={"alpha": alpha}, command=f"python train.py {alpha}",
                    metrics={} if number % 10 == 0 else {
                        "rmse": {"last": rmse, "step": None, "min": 0.0, "max": 1.0, "count": 1,
                                 "better": None}})
        run_dir = store.run_dir(run_id)
        run_dir.mkdir()
        (run_dir / RECORD).write_text(json.dumps(data))
        ids.append(run_id)
        runs.append((run_id, "FINISHED", began.isoformat(), 3.0, "proj", "main", 0, "local",
                     None, None, "run", None))
        params.append((run_id, "alpha", alpha, float(alpha)))
        if number % 10:
            metrics.append((run_id, "rmse", rmse, None, 0.0, 1.0, 1))
    with store.transaction() as db:  # the benchmark fills the index in one go
        db.executemany(f"INSERT INTO runs ({', '.join(COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(COLUMNS))})", runs)
        db.executemany("INSERT INTO params VALUES (?, ?, ?, ?)", params)
        db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)
    store.close()
    return ids


def timed_pairs(commands: list[list[str]], env: dict[str, str], repeat: int) -> list[float]:
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for index, argv in enumerate(commands):
            begin = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            samples[index].append(time.perf_counter() - begin)
    return [statistics.median(s) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        begin = time.perf_counter()
        ids = fill(home, options.count)
        print(f"wrote {options.count} records and their index in "
              f"{time.perf_counter() - begin:.1f} s")
        env = {**os.environ, "REPRUN_HOME": str(home)}
        cli = [sys.executable, "-m", "runner"]
        names = ["python -c pass (the interpreter)", "reprun --help",
                 "reprun runs list -n 20", "runs list --sort metrics.rmse -n 20",
                 "runs list --where 'metrics.rmse < 0.1' -n 20", "reprun runs show PREFIX"]
        commands = [[sys.executable, "-c", "pass"], [*cli, "--help"],
                    [*cli, "runs", "list", "-n", "20"],
                    [*cli, "runs", "list", "--sort", "metrics.rmse", "-n", "20"],
                    [*cli, "runs", "list", "--where", "metrics.rmse < 0.1", "-n", "20"],
                    [*cli, "runs", "show", ids[len(ids) // 2][:8]]]
        goals = ["", "", LIST_GOAL, LIST_GOAL, LIST_GOAL, ""]
        rows = list(zip(names, timed_pairs(commands, env, options.repeat), goals, strict=True))
        begin = time.perf_counter()
        subprocess.run([*cli, "runs", "reindex"], env=env, check=True, capture_output=True)
        rows.append(("reprun runs reindex", time.perf_counter() - begin, REINDEX_GOAL))
        print(f"{options.count} runs; goals are for 100,000 runs; 'over --help' is what a "
              "command costs beyond the interpreter's and the CLI's start-up")
        help_s = rows[1][1]
        print(f"{'command':<46} {'median s':>9} {'over --help':>11} {'goal s':>7}")
        for name, seconds, goal in rows:
            shown = f"{goal:.2f}" if goal else ""
            over = f"{seconds - help_s:+.3f}" if name.startswith(("reprun runs", "runs")) else ""
            print(f"{name:<46} {seconds:>9.3f} {over:>11} {shown:>7}")

if __name__ == "__main__":
    main()
