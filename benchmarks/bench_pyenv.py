"""Benchmark Python environments: reprun against running directly, uv by hand and MLflow.

Measures, on one project, the median wall time of:
  (a) the command run directly in its environment
  (b) a warm ``reprun run`` (lock and environment cached)
  (c) a cold ``reprun run`` (empty reprun cache: resolve, build, run)
  (d) ``uv venv`` + ``uv pip install -r requirements.txt`` + the command, by hand
  (f) a warm ``reprun run --env-manager local`` with that environment first on PATH (what
      its interpreter has installed is remembered, not asked again)
  (e) ``mlflow run --env-manager uv`` / ``virtualenv`` (MLflow installed in its own venv), if
      MLflow installs within --mlflow-timeout seconds; skipped otherwise

uv's own download cache is warm for (c), (d) and (e), so they compare resolution and installation
work, not the network. Usage::

    python benchmarks/bench_pyenv.py [--deps "requests"] [--repeat 5] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SCRIPT = "import sys\nprint('ok', sys.prefix)\n"


def timed(fn: Callable[[], None], repeat: int, setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


Timed = tuple[str, Callable[[], None], Callable[[], None] | None]


def interleaved(measurements: list[Timed], repeat: int) -> list[tuple[str, float]]:
    """Median time of each measurement, timed in turn within each repetition."""
    times: dict[str, list[float]] = {name: [] for name, _fn, _setup in measurements}
    for _ in range(repeat):
        for name, fn, setup in measurements:
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(values)) for name, values in times.items()]


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 900) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        tail = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1]} failed: {' '.join(tail)}")
    return done.stdout


def make_project(root: Path, deps: list[str]) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("".join(f"{d}\n" for d in deps))
    (project / "python_env.yaml").write_text("dependencies:\n  - -r requirements.txt\n")
    (project / "MLproject").write_text(
        "name: bench\npython_env: python_env.yaml\n"
        "entry_points:\n  main:\n    command: \"python main.py\"\n")
    (project / "main.py").write_text(SCRIPT + "".join(f"import {module_of(d)}\n" for d in deps))
    return project


def module_of(requirement: str) -> str:
    """The module a requirement provides, for the usual names (scikit-learn -> sklearn)."""
    name = re.split(r"[=<>!~\[ ;]", requirement, maxsplit=1)[0].lower()
    return {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL"}.get(
        name, name.replace("-", "_"))


def mlflow_python(root: Path, env: dict[str, str], uv: str, timeout: float,
                  extra: list[str] | None = None) -> str | None:
    """The ``mlflow`` executable of MLflow installed in its own virtual environment, or None."""
    venv = root / "mlflow-venv"
    try:
        run([uv, "venv", str(venv), "--python", sys.executable, "-q"], env)
        run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "-q",
             "mlflow-skinny", "virtualenv", *(extra or [])], env, timeout=timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"mlflow skipped: MLflow did not install: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return None
    return str(venv / "bin" / "mlflow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deps", default="requests", help="space-separated requirements")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--mlflow-timeout", type=float, default=300)
    args = parser.parse_args()

    from uv import find_uv_bin

    uv = str(find_uv_bin())
    reprun = [sys.executable, "-m", "runner"]
    root = Path(tempfile.mkdtemp(prefix="bench-pyenv-"))
    try:
        project = make_project(root, args.deps.split())
        base = {k: v for k, v in os.environ.items() if not k.startswith(("REPRUN_", "VIRTUAL"))}
        warm_home = root / "warm-home"
        warm = {**base, "REPRUN_HOME": str(warm_home)}
        run([*reprun, "run", str(project), "-q"], warm)  # fill the caches (and uv's)
        env_dir = next((warm_home / "cache" / "python" / "envs").iterdir()).resolve()

        direct_env = {**base, "PATH": f"{env_dir / 'bin'}{os.pathsep}{base['PATH']}"}
        run([*reprun, "run", str(project), "-q", "--env-manager", "local"],
            {**direct_env, "REPRUN_HOME": str(warm_home)})  # what the interpreter has
        cold_home = root / "cold-home"
        cold = {**base, "REPRUN_HOME": str(cold_home)}
        hand = root / "by-hand"

        def by_hand() -> None:
            run([uv, "venv", str(hand), "-q", "--python", sys.executable], base)
            run([uv, "pip", "install", "-q", "--python", str(hand / "bin" / "python"), "-r",
                 str(project / "requirements.txt")], base)
            run([str(hand / "bin" / "python"), "main.py"], base, cwd=project)

        # Round-robin: each repetition times every measurement once, so that a slower moment
        # of a shared machine weighs on all of them alike.
        results = interleaved([
            ("(a) command run directly in its env",
             lambda: run(["bash", "-c", "python main.py"], direct_env, cwd=project), None),
            ("(b) reprun run, warm",
             lambda: run([*reprun, "run", str(project), "-q"], warm), None),
            ("(c) reprun run, cold (resolve+build+run)",
             lambda: run([*reprun, "run", str(project), "-q"], cold),
             lambda: shutil.rmtree(cold_home, ignore_errors=True)),
            ("(d) uv venv + uv pip install + run, by hand", by_hand,
             lambda: shutil.rmtree(hand, ignore_errors=True)),
            ("(f) reprun run --env-manager local, warm",
             lambda: run([*reprun, "run", str(project), "-q", "--env-manager", "local"],
                         {**direct_env, "REPRUN_HOME": str(warm_home)}), None),
        ], args.repeat)

        mlflow = None if args.no_mlflow else mlflow_python(root, base, uv, args.mlflow_timeout)
        if mlflow is not None:
            for manager in ("uv", "virtualenv"):
                mlenv = {**base, "MLFLOW_ENV_ROOT": str(root / f"mlflow-envs-{manager}"),
                         "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(),
                         "MLFLOW_ALLOW_FILE_STORE": "true",
                         "PATH": os.pathsep.join([str(Path(mlflow).parent), str(Path(uv).parent),
                                                  base["PATH"]])}
                try:
                    # A cold MLflow environment first, then its warm reuse.
                    cold_s = timed(lambda e=mlenv, m=manager: run(  # type: ignore[misc]
                        [mlflow, "run", str(project), "--env-manager", m], e), 1)
                    warm_s = timed(lambda e=mlenv, m=manager: run(  # type: ignore[misc]
                        [mlflow, "run", str(project), "--env-manager", m], e), args.repeat)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"(e) mlflow --env-manager {manager} failed: "
                          f"{str(exc).splitlines()[0]}", file=sys.stderr)
                    continue
                results.append((f"(e) mlflow run --env-manager {manager}, cold (1 run)", cold_s))
                results.append((f"(e) mlflow run --env-manager {manager}, warm", warm_s))
        report(results, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(results: list[tuple[str, float]], args: argparse.Namespace) -> None:
    values = dict(results)
    a = values["(a) command run directly in its env"]
    d = values["(d) uv venv + uv pip install + run, by hand"]
    print(f"\ndeps: {args.deps}   repeat: {args.repeat}   python: {sys.version.split()[0]}\n")
    print(f"| {'measurement':<46} | {'median s':>8} | {'vs (a)':>7} | {'vs (d)':>7} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    for name, seconds in results:
        print(f"| {name:<46} | {seconds:>8.3f} | {seconds / a:>6.1f}x | {seconds / d:>6.2f}x |")
    b = values["(b) reprun run, warm"]
    c = values["(c) reprun run, cold (resolve+build+run)"]
    f = values["(f) reprun run --env-manager local, warm"]
    print(f"\n(b) - (a) = {b - a:.3f} s (goal: at most 0.10 s)")
    print(f"(f) - (b) = {f - b:.3f} s (goal: at most 0.03 s)")
    print(f"(c) / (d) = {c / d:.2f} (goal: at most 1.3)")


if __name__ == "__main__":
    main()
