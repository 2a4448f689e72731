"""Benchmark: a cached Docker run of an unchanged project vs `docker run` by hand and vs MLflow.

Usage: python benchmarks/bench_docker.py [REPETITIONS] [--no-mlflow]   (default 7 repetitions)

Needs a Docker engine and a Python base image (REPRUN_TEST_BASE_IMAGE, default
reprun-test/python:3.11-bookworm; .ci/docker-setup.sh makes both). Makes a tiny docker_env project
(image: the base image) in a temporary folder, runs it once with reprun to build its image, then
times, round-robin (each repetition times each once):

  reprun   `reprun run DIR` (image reused: it hashes the context, finds the tag, starts the
           container, records the run; all through its own Engine API client, the docker SDK is
           not loaded)
  by hand  `docker run --rm` of the image reprun built, with what reprun's container has: the
           default network, the outputs and metrics-stream bind mounts, its variables, its
           working directory and its shell wrapper around `python main.py` (the same command,
           network and mounts: like with like)
  mlflow   `mlflow run DIR --build-image` (MLflow installed with the docker SDK in its own
           virtual environment, a file tracking store), if MLflow installs here; MLflow has no
           image reuse: it builds its project image on every run

and prints the medians and the ratios (reprun / by hand: the goal is at most 1.2x).
Measures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.2  # reprun / docker run by hand, same image, command, network and mounts
BASE = os.environ.get("REPRUN_TEST_BASE_IMAGE") or "reprun-test/python:3.11-bookworm"
MAIN = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ.get('REPRUN_OUTPUT_DIR', '.'), 'o').write_text('1')\n"
)
MLPROJECT = f"""name: bench-docker-project
docker_env:
  image: {BASE}
entry_points:
  main:
    command: "python main.py"
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def by_hand(docker_cli: str, image: str, root: Path, name: str) -> list[str]:
    """`docker run` of the image as reprun's container runs it (see
    backends/docker/backend.py: container_config): default network, the two bind mounts, the
    variables, the working directory, the shell wrapper."""
    from backends.docker.container import OUTPUT_TARGET, SHELL_WRAPPER, STREAM_TARGET, WORKSPACE

    out, stream = root / "out", root / "stream"
    stream.mkdir(exist_ok=True)
    return [docker_cli, "run", "--rm", "-v", f"{out}:{OUTPUT_TARGET}",
            "-v", f"{stream}:{STREAM_TARGET}", "-w", f"{WORKSPACE}/{name}",
            "-e", "REPRUN_RUN_ID=bench", "-e", f"REPRUN_OUTPUT_DIR={OUTPUT_TARGET}",
            "-e", f"REPRUN_METRICS={STREAM_TARGET}/metrics.jsonl", "-e", "PYTHONUNBUFFERED=1",
            image, "/bin/sh", "-c", SHELL_WRAPPER, "python main.py"]


def mlflow_command(root: Path, project: Path,
                   env: dict[str, str]) -> tuple[list[str], dict[str, str]] | None:
    """`mlflow run --build-image` of the project and its environment, or None (and why)."""
    from bench_pyenv import mlflow_python
    from uv import find_uv_bin

    mlflow = mlflow_python(root, env, str(find_uv_bin()), 300, extra=["docker"])
    if mlflow is None:
        return None
    ml_env = {**env, "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(),
              "MLFLOW_ALLOW_FILE_STORE": "true",
              "PATH": os.pathsep.join([str(Path(mlflow).parent), env["PATH"]])}
    argv = [mlflow, "run", str(project), "--build-image"]
    try:
        timed(argv, ml_env)
    except subprocess.CalledProcessError:
        done = subprocess.run(argv, env=ml_env, capture_output=True, text=True, check=False)
        tail = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()][-1:]
        print(f"mlflow skipped: 'mlflow run --build-image' failed: {' '.join(tail)}",
              file=sys.stderr)
        return None
    return argv, ml_env


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repetitions = int(args[0]) if args else 7
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        sys.exit("bench_docker: the docker CLI is needed for the by-hand runs")
    with tempfile.TemporaryDirectory(prefix="reprun-bench-docker-") as tmp:
        root = Path(tmp)
        project = root / "bench-docker-project"
        project.mkdir()
        (project / "main.py").write_text(MAIN)
        (project / "MLproject").write_text(MLPROJECT)
        out = root / "out"
        out.mkdir()
        env = {**os.environ, "REPRUN_HOME": str(root / "home")}
        reprun = [sys.executable, "-m", "runner", "run", str(project), "-q"]
        subprocess.run(reprun, env=env, check=True)
        listed = subprocess.run([sys.executable, "-m", "runner", "runs", "list", "--json"],
                                env=env, check=True, capture_output=True, text=True)
        run_id = json.loads(listed.stdout)[0]["run_id"]
        shown = subprocess.run([sys.executable, "-m", "runner", "runs", "show", run_id, "--json"],
                               env=env, check=True, capture_output=True, text=True)
        image = json.loads(shown.stdout)["backend"]["docker"]["image"]
        commands = {
            "reprun": (reprun, env),
            "by hand": (by_hand(docker_cli, image, root, project.name), env),
        }
        if "--no-mlflow" not in sys.argv:
            mlflow = mlflow_command(root, project, env)
            if mlflow is not None:
                commands["mlflow"] = mlflow
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repetitions):
            for name, (argv, run_env) in commands.items():
                times[name].append(timed(argv, run_env))
        for built in (image, "bench-docker-project"):
            subprocess.run([docker_cli, "rmi", "-f", built], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report(image, repetitions, times)


def report(image: str, repetitions: int, times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"image {image} (reused), {repetitions} repetitions, medians:")
    for name, value in medians.items():
        print(f"  {name:<8} {value:.3f} s   (min {min(times[name]):.3f} s)")
    print(f"  reprun / by hand  {medians['reprun'] / medians['by hand']:.2f}x  (goal: at most "
          f"{GOAL}x)")
    if "mlflow" in medians:
        print(f"  mlflow / reprun   {medians['mlflow'] / medians['reprun']:.2f}x")


if __name__ == "__main__":
    main()
