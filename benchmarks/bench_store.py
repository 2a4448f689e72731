"""Benchmark: `reprun runs list` and `runs show` with many thousands of runs in the store.

Usage: python benchmarks/bench_store.py [N_RUNS]   (default 5000)

Fills a temporary REPRUN_HOME with N finished runs (written through the store, as real runs are),
then times the CLI commands a person types, and the same with the SQLite index removed (the first
`runs list` rebuilds it). Prints medians of 5 repetitions. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.record.host import host_info
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    ProjectInfo,
    RunRecord,
    SourceInfo,
    Status,
)
from runner.record.store import RunStore


def fill(store: RunStore, count: int) -> list[str]:
    host = host_info()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = []
    for index in range(count):
        run_id = uuid.uuid4().hex
        store.create_run_dir(run_id)
        began = start + timedelta(minutes=index)
        store.save(RunRecord(
            run_id=run_id, status=Status.FINISHED, exit_code=0, entry_point="main",
            parameters={"alpha": str(index)}, command=f"python train.py {index}",
            project=ProjectInfo(uri="proj", path="/proj", name="proj"), source=SourceInfo(),
            environment=EnvironmentInfo(kind="none", manager="local"),
            backend=BackendInfo(name="local"), host=host, output_dir="/out",
            started_at=began, ended_at=began + timedelta(seconds=3), duration_s=3.0,
        ))
        ids.append(run_id)
    return ids


def timed(argv: list[str], env: dict[str, str], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        begin = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = RunStore(home)
        begin = time.perf_counter()
        ids = fill(store, count)
        print(f"wrote {count} records in {time.perf_counter() - begin:.1f} s")
        env = {**os.environ, "REPRUN_HOME": str(home)}
        cli = [sys.executable, "-m", "runner"]
        rows = [
            ("reprun --help", timed([*cli, "--help"], env)),
            ("reprun runs list -n 20", timed([*cli, "runs", "list", "-n", "20"], env)),
            ("reprun runs list (all)", timed([*cli, "runs", "list"], env)),
            ("reprun runs show PREFIX", timed([*cli, "runs", "show", ids[count // 2][:8]], env)),
        ]
        (home / "index.sqlite").unlink()
        rows.append(("runs list -n 20, index rebuilt", timed([*cli, "runs", "list", "-n", "20"],
                                                             env, repeat=1)))
        print(f"{'command':<34} {'median s':>9}")
        for name, seconds in rows:
            print(f"{name:<34} {seconds:>9.3f}")


if __name__ == "__main__":
    main()
