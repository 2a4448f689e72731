"""Benchmark MLflow tracking: what a tracking server adds to a warm ``reprun run``, and
``mlflow run`` on the same project and server.

Measures, interleaved, the median wall time of:
  (a) a warm ``reprun run`` without tracking
  (b) the same with ``--tracking-uri`` (create the run with its tags and parameters, pass the
      variables, read the metrics back, upload record, lock and log, end the run)
  (c) ``mlflow run --env-manager local`` against the same server (MLflow in its own venv)

The project runs ``python -c pass`` with two parameters; the goal for (b) - (a) is under 0.3 s.
A server is started from ``--mlflow`` (the ``mlflow`` executable of a venv; default
$REPRUN_TEST_MLFLOW) unless ``--tracking-uri`` names a running one. Usage::

    python benchmarks/bench_tracking.py [--repeat 7] [--mlflow PATH | --tracking-uri URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

MLPROJECT = """\
name: bench
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      label: {type: string, default: "a b"}
    command: "python -c pass"
"""


@contextlib.contextmanager
def mlflow_server(mlflow: Path, directory: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (directory / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
         "--artifacts-destination", str(directory / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health",
                                                                        timeout=5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow server did not start; see {directory / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind
        log.close()


def interleaved(measurements: list[tuple[str, Callable[[], None]]],
                repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name, _fn in measurements}
    for _ in range(repeat):
        for name, fn in measurements:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mlflow", type=Path, default=os.environ.get("REPRUN_TEST_MLFLOW"))
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reprun-bench-tracking-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "MLproject").write_text(MLPROJECT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REPRUN_"))}
        env["REPRUN_HOME"] = str(root / "home")
        with contextlib.ExitStack() as stack:
            url = args.tracking_uri
            if url is None:
                if args.mlflow is None:
                    raise SystemExit("give --mlflow PATH (or REPRUN_TEST_MLFLOW) or --tracking-uri")
                (root / "server").mkdir()
                url = stack.enter_context(mlflow_server(args.mlflow, root / "server"))
            reprun = [sys.executable, "-m", "runner", "run", str(project), "--env-manager",
                      "local", "-P", "alpha=0.3", "-q"]

            def run(argv: list[str], extra: dict[str, str] | None = None) -> Callable[[], None]:
                return lambda: subprocess.run(argv, env={**env, **(extra or {})}, cwd=root,
                                              check=True, capture_output=True)

            plain = run(reprun)
            tracked = run([*reprun, "--tracking-uri", url, "--experiment-name", "bench"])
            plain()
            tracked()  # warm: environment cached, experiment made
            measurements = [("reprun run (warm, no tracking)", plain),
                            ("reprun run (warm, --tracking-uri)", tracked)]
            if args.mlflow is not None:
                measurements.append(("mlflow run --env-manager local", run(
                    [str(args.mlflow), "run", str(project), "--env-manager", "local",
                     "-P", "alpha=0.3", "--experiment-name", "bench"],
                    {"MLFLOW_TRACKING_URI": url})))
            results = interleaved(measurements, args.repeat)
    for name, seconds in results.items():
        print(f"{name:<40} {seconds:7.3f} s")
    names = list(results)
    print(f"{'added by tracking':<40} {results[names[1]] - results[names[0]]:7.3f} s "
          "(goal: under 0.3 s)")


if __name__ == "__main__":
    main()
