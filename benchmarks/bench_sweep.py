"""Benchmark: a sweep of N trivial trials, --parallel P, against the same N runs started by hand
P at a time.

Usage: python benchmarks/bench_sweep.py [N] [P] [REPEAT]   (defaults: 100 trials, 2, 3)

The project is a git repository whose entry point prints one metric line (``score: K``); the
environment is ``--env-manager local``, so that no environment build weighs on either side.

- sweep:   ``reprun sweep PROJECT -P k=1..N --parallel P`` (one process, trials in threads)
- by hand: ``xargs -P P`` starting ``reprun run PROJECT -P k=K`` for K in 1..N (one process per
           run: what a driver script or a shell loop does)
- bare:    the same N commands with ``bash -c`` through ``xargs -P P``, no reprun (the floor)

Each on a fresh store; prints the median wall time of REPEAT repetitions and the ratio
sweep / by hand (the goal: under 1.2). Measures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLPROJECT = """\
name: bench-sweep
entry_points:
  main:
    parameters: {k: {type: int, default: 0}}
    command: "echo score: {k}"
    metrics: {stdout: true}
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "b"]):
        subprocess.run(["git", *args], cwd=project, env=env, check=True)
    return project


def timed(argv: list[str], home: Path, stdin: str | None = None) -> float:
    env = {**os.environ, "REPRUN_HOME": str(home)}
    start = time.perf_counter()
    subprocess.run(argv, env=env, input=stdin, text=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    reprun = [sys.executable, "-m", "runner"]
    keys = "".join(f"{k}\n" for k in range(1, count + 1))
    results: dict[str, list[float]] = {"sweep": [], "by hand": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        project = make_project(root)
        for rep in range(repeat):
            results["sweep"].append(timed(
                [*reprun, "sweep", str(project), "-P", f"k=1..{count}", "--parallel",
                 str(parallel), "--env-manager", "local"], root / f"sweep-{rep}"))
            results["by hand"].append(timed(
                ["xargs", "-P", str(parallel), "-I{}", *reprun, "run", str(project), "-P",
                 "k={}", "--env-manager", "local", "-q"], root / f"hand-{rep}", keys))
            results["bare"].append(timed(
                ["xargs", "-P", str(parallel), "-I{}", "bash", "-c", "echo score: {}"],
                root / f"bare-{rep}", keys))
    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"{count} trials, {parallel} at a time, median of {repeat}:")
    for name, value in medians.items():
        print(f"  {name:<8} {value:7.2f} s  ({value / count * 1000:6.1f} ms a trial)")
    print(f"  sweep / by hand: {medians['sweep'] / medians['by hand']:.2f}")


if __name__ == "__main__":
    main()
