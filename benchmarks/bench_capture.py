"""Benchmark MLflow capture: what reprun answering the project's MLflow client costs, against
the same run logging to MLflow's default local store.

The project (the real MLflow client, from the venv of ``--mlflow``; default $REPRUN_TEST_MLFLOW)
logs 10,000 metric points (1,000 steps of 10 metrics, one ``log_metrics`` call a step) and a
50 MB model file (``log_artifact``). Measured, interleaved, the median wall time of:
  (a) ``reprun run`` with no tracking URI: reprun's endpoint answers, the record gets it all
  (b) the same with ``REPRUN_MLFLOW_CAPTURE=off``: MLflow writes its default local store in the
      project directory (removed before each run)
The goal is (a) / (b) at most 1.2. Usage::

    python benchmarks/bench_capture.py [--repeat 3] [--mlflow PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLPROJECT = """\
name: bench-capture
entry_points:
  main:
    command: "$MLFLOW_PY train.py"
"""
TRAIN = """\
import os
import mlflow
with open("model.bin", "wb") as f:
    f.write(os.urandom(50 * 1024 * 1024))
with mlflow.start_run():
    for step in range(1000):
        mlflow.log_metrics({f"m{i}": step * 0.001 + i for i in range(10)}, step=step)
    mlflow.log_artifact("model.bin", artifact_path="model")
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mlflow", default=os.environ.get("REPRUN_TEST_MLFLOW"))
    args = parser.parse_args()
    if not args.mlflow:
        sys.exit("name the mlflow executable of a venv: --mlflow PATH or $REPRUN_TEST_MLFLOW")
    python = Path(args.mlflow).parent / "python"
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "MLproject").write_text(MLPROJECT)
        (project / "train.py").write_text(TRAIN)
        base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        base.update({"REPRUN_HOME": str(root / "home"), "MLFLOW_PY": str(python),
                     "MLFLOW_DISABLE_TELEMETRY": "true"})
        argv = [sys.executable, "-m", "runner", "run", str(project), "--env-manager", "local"]
        times: dict[str, list[float]] = {"capture": [], "mlflow store": []}
        timed(argv, base, root)  # warm-up: the environment is built once
        for _ in range(args.repeat):
            times["capture"].append(timed(argv, base, root))
            for name in ("mlruns", "mlartifacts", "mlflow.db", "model.bin"):
                path = project / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            times["mlflow store"].append(
                timed(argv, {**base, "REPRUN_MLFLOW_CAPTURE": "off"}, root))
        medians = {k: statistics.median(v) for k, v in times.items()}
        for name, value in medians.items():
            each = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{name:14s} median {value:7.2f} s  ({each})")
        ratio = medians["capture"] / medians["mlflow store"]
        print(f"ratio capture / MLflow's local store: {ratio:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
