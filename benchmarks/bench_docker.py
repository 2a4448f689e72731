"""Benchmark: a cached Docker run of an unchanged project vs `docker run` of the same image by hand.

Usage: python benchmarks/bench_docker.py [REPETITIONS]   (default 7)

Needs a Docker engine and a Python base image (REPRUN_TEST_BASE_IMAGE, default
reprun-test/python:3.11-bookworm; .ci/docker-setup.sh makes both). Makes a tiny project in a
temporary folder, runs it once with reprun to build its image, then times, alternating:

  reprun   `reprun run DIR -e main.py --backend docker --docker-base-image BASE` (image reused:
           it hashes the context, finds the tag, starts the container, records the run; all
           through its own Engine API client, the docker SDK is not loaded)
  by hand  `docker run --rm --network none -v OUT:/reprun/outputs IMAGE python main.py` of the
           image reprun built

and prints the medians and their ratio (the target is under 1.5). MLflow (`mlflow run
--build-image`) is not compared: it pulls in a large dependency tree and its docker runs need a
tracking store mounted; it is left out rather than timed unfairly. Measures; asserts nothing.
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

BASE = os.environ.get("REPRUN_TEST_BASE_IMAGE") or "reprun-test/python:3.11-bookworm"
MAIN = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ.get('REPRUN_OUTPUT_DIR', '.'), 'o').write_text('1')\n"
)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        sys.exit("bench_docker: the docker CLI is needed for the by-hand runs")
    with tempfile.TemporaryDirectory(prefix="reprun-bench-docker-") as tmp:
        root = Path(tmp)
        project = root / "bench-docker-project"
        project.mkdir()
        (project / "main.py").write_text(MAIN)
        out = root / "out"
        out.mkdir()
        env = {**os.environ, "REPRUN_HOME": str(root / "home")}
        reprun = [sys.executable, "-m", "runner", "run", str(project), "-e", "main.py",
                  "--backend", "docker", "--docker-base-image", BASE, "-q"]
        subprocess.run(reprun, env=env, check=True)
        listed = subprocess.run([sys.executable, "-m", "runner", "runs", "list", "--json"],
                                env=env, check=True, capture_output=True, text=True)
        run_id = json.loads(listed.stdout)[0]["run_id"]
        shown = subprocess.run([sys.executable, "-m", "runner", "runs", "show", run_id, "--json"],
                               env=env, check=True, capture_output=True, text=True)
        image = json.loads(shown.stdout)["backend"]["docker"]["image"]
        by_hand = [docker_cli, "run", "--rm", "--network", "none", "-v", f"{out}:/reprun/outputs",
                   "-e", "REPRUN_OUTPUT_DIR=/reprun/outputs", image, "python", "main.py"]
        times: dict[str, list[float]] = {"reprun": [], "by hand": []}
        for _ in range(repetitions):
            times["reprun"].append(timed(reprun, env))
            times["by hand"].append(timed(by_hand, env))
        subprocess.run([docker_cli, "rmi", "-f", image], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"image {image} (reused), {repetitions} repetitions, medians:")
    for name, value in medians.items():
        print(f"  {name:<8} {value:.3f} s   (min {min(times[name]):.3f} s)")
    print(f"  ratio    {medians['reprun'] / medians['by hand']:.2f}x  (target < 1.5x)")


if __name__ == "__main__":
    main()
