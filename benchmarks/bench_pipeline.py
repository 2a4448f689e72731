"""Benchmark: a pipeline of N steps with nothing changed (every step reused), against the
slowest `reprun runs show` of one of its steps; and the same pipeline after one input changed.

Usage: python benchmarks/bench_pipeline.py [N] [REPEAT]   (defaults: 20 steps, 3)

The project is a git repository with a chain of N steps, each copying the previous step's output
and appending a line (step 0 reads a file outside the project); ``--env-manager local``, so that
no environment build weighs. The store is filled by a first run; then, REPEAT times:

- unchanged:  ``reprun run PROJECT -e chain`` (every step reused)
- runs show:  ``reprun runs show RUN`` of each step run of the last pipeline run (the slowest)
- one change: the input of step N/2 changed through its pipeline parameter, so steps N/2..N-1
              run again and the others are reused (the count of each is printed)

The goal (issue 28): unchanged finishes within 1 s of the slowest runs show. Measures; asserts
nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def mlproject(count: int) -> str:
    middle = count // 2
    lines = [
        "name: bench-pipeline",
        "entry_points:",
        "  step:",
        "    parameters: {src: path, extra: {type: string, default: ''}}",
        "    command: \"cat {src} > \\\"$REPRUN_OUTPUT_DIR/out.txt\\\"; "
        "echo {extra} >> \\\"$REPRUN_OUTPUT_DIR/out.txt\\\"\"",
        "pipelines:",
        "  chain:",
        "    parameters: {seed: path, extra: {type: string, default: a}}",
        "    steps:",
        "      s0: {entry_point: step, parameters: {src: \"{seed}\"}}",
    ]
    for k in range(1, count):
        extra = ', extra: "{extra}"' if k == middle else ""
        lines.append(f"      s{k}: {{entry_point: step, parameters: "
                     f"{{src: \"{{s{k - 1}.outputs}}/out.txt\"{extra}}}}}")
    return "\n".join(lines) + "\n"


def make_project(root: Path, count: int) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "MLproject").write_text(mlproject(count))
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "b"]):
        subprocess.run(["git", *args], cwd=project, env=env, check=True)
    return project


def reprun(home: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "REPRUN_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", *args], env=env, text=True,
                          check=True, capture_output=True)
    return time.perf_counter() - start, done.stdout + done.stderr


def said(output: str) -> tuple[int, int]:
    lines = [x for x in output.splitlines() if x.startswith("reprun: step ")]
    return (sum(": reused " in x for x in lines), sum(": ran " in x for x in lines))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        project = make_project(root, count)
        seed = root / "seed.txt"
        seed.write_text("seed\n")
        home = root / "home"
        run = ("run", str(project), "-e", "chain", "--env-manager", "local", "-P",
               f"seed={seed}")
        first, _ = reprun(home, *run)
        unchanged, shows, changed = [], [], []
        counts = (0, 0)
        for rep in range(repeat):
            took, output = reprun(home, *run)
            unchanged.append(took)
            _t, listed = reprun(home, "runs", "list", "--json", "-n", str(count))
            ids = [r["run_id"] for r in json.loads(listed[:listed.rindex("]") + 1])]
            shows.append(max(reprun(home, "runs", "show", rid)[0] for rid in ids))
            took, output = reprun(home, *run, "-P", f"extra=changed-{rep}")
            changed.append(took)
            counts = said(output)
    print(f"{count} steps, median of {repeat} (first run, every step ran: {first:.2f} s):")
    print(f"  unchanged (all reused):  {statistics.median(unchanged):.2f} s")
    print(f"  slowest runs show:       {statistics.median(shows):.2f} s")
    print(f"  one input changed:       {statistics.median(changed):.2f} s "
          f"({counts[0]} reused, {counts[1]} ran)")
    print(f"  unchanged - runs show:   "
          f"{statistics.median(unchanged) - statistics.median(shows):.2f} s (goal: under 1 s)")


if __name__ == "__main__":
    main()
