"""Benchmark: a cached Slurm run of an unchanged project vs `sbatch --wait` of the same command.

Usage: python benchmarks/bench_slurm.py [REPETITIONS]   (default 7 repetitions)
       python benchmarks/bench_slurm.py --sweep N      (a sweep of N trials, once)

Needs a Slurm cluster (`bash .ci/slurm-setup.sh` makes a one-node one). Makes a tiny project in a
temporary folder, runs it once with reprun (the environment is built in the workdir), then times,
round-robin (each repetition times each once):

  reprun   `reprun run DIR --backend slurm` (environment reused: it stages the code, submits,
           follows the job's output, reads sacct, copies the outputs back, records the run)
  by hand  `sbatch --wait --wrap 'python main.py'` with the same interpreter, in the project

and prints the medians and the ratio (reprun / by hand: the goal is at most 1.2).
With ``--sweep N`` it times instead `reprun sweep DIR -P k=0..N-1 --parallel 2 --backend slurm`
(one job array of N trials, each recorded) against `sbatch --wait --array=0-N-1%2` of the same
command by hand. Measures; asserts nothing.
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

MAIN = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ.get('REPRUN_OUTPUT_DIR', '.'), 'o').write_text('1')\n"
    "print('done')\n"
)
MLPROJECT = """name: bench-slurm-project
entry_points:
  main:
    command: "python main.py"
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def sweep(count: int, root: Path, project: Path, env: dict[str, str], config: str) -> None:
    """One sweep of ``count`` trials against one job array by hand."""
    (project / "MLproject").write_text(MLPROJECT.replace('"python main.py"',
                                                         '"python main.py {k}"').replace(
        "  main:\n", "  main:\n    parameters: {k: {type: int, default: 0}}\n"))
    reprun = [sys.executable, "-m", "runner", "sweep", str(project), "-P", f"k=0..{count - 1}",
              "--parallel", "2", "--backend", "slurm", "--env-manager", "local",
              "--backend-config", config]
    by_hand = ["sbatch", "--wait", "--quiet", f"--array=0-{count - 1}%2",
               f"--output={root / 'hand-%a.log'}", f"--wrap={sys.executable} main.py"]
    mine = timed(reprun, env, root)
    theirs = timed(by_hand, env, project)
    print(f"reprun sweep of {count} trials (one job array): {mine:.1f} s")
    print(f"sbatch --wait --array of {count} by hand:        {theirs:.1f} s")
    print(f"ratio: {mine / theirs:.2f}")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repetitions = int(args[0]) if args else 7
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "MLproject").write_text(MLPROJECT)
        (project / "main.py").write_text(MAIN)
        env = {**os.environ, "REPRUN_HOME": str(root / "home")}
        config = json.dumps({"workdir": str(root / "shared")})
        if "--sweep" in sys.argv:
            sweep(repetitions if args else 100, root, project, env, config)
            return
        reprun = [sys.executable, "-m", "runner", "run", str(project), "--backend", "slurm",
                  "--backend-config", config]
        timed(reprun, env, root)  # builds the environment
        listed = subprocess.run([sys.executable, "-m", "runner", "runs", "list", "--json"],
                                env=env, capture_output=True, text=True, check=True)
        run_id = json.loads(listed.stdout)[0]["run_id"]
        shown = subprocess.run([sys.executable, "-m", "runner", "runs", "show", run_id,
                                "--json"], env=env, capture_output=True, text=True, check=True)
        python = json.loads(shown.stdout)["environment"]["python_executable"]
        by_hand = ["sbatch", "--wait", "--quiet", f"--output={root / 'hand.log'}",
                   f"--wrap={python} main.py"]
        times: dict[str, list[float]] = {"reprun": [], "by hand": []}
        for _ in range(repetitions):
            times["reprun"].append(timed(reprun, env, root))
            times["by hand"].append(timed(by_hand, env, project))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:8s} median {value:.3f} s over {repetitions}")
    print(f"ratio reprun / by hand: {medians['reprun'] / medians['by hand']:.2f} "
          "(goal: at most 1.2)")


if __name__ == "__main__":
    main()
