"""Benchmark: metric capture against plain streaming, and comparing many runs by a metric.

Usage: python benchmarks/bench_metrics.py [capture|list|all] [N_LINES] [N_RUNS] [HOME]
       (defaults: all, 200000 lines, 10000 runs; HOME: a store filled by an earlier
       run of this benchmark, kept and reused instead of a temporary one)

capture: a project prints N_LINES lines ``loss: <x> (step <i>)``; it runs with no metrics
  declared (plain streaming), with ``metrics: {stdout: true}`` and with a regular expression per
  metric. For each: the wall time of ``reprun run`` (output to /dev/null), the command's own
  duration as recorded (the streaming), and the time to read the metrics from the log alone.
list: a store of N_RUNS finished runs (two parameters, three metrics each), written through the
  store as real runs are; then the CLI: ``runs list`` sorted by a metric, filtered, as CSV, and
  ``runs compare --where``; then the same listings in one process (click's test runner), which
  leaves out the interpreter's start-up that every command pays (``reprun --help``).

Prints medians of 5 repetitions. Measures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.record.host import host_info
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    MetricSummary,
    ProjectInfo,
    RunRecord,
    SourceInfo,
    Status,
)
from runner.spec.types import MetricsSpec
from runner.tracking.metrics import collect

REPEAT = 5
PRINTER = """\
import sys
n = int(sys.argv[1])
out = sys.stdout
for start in range(0, n, 1000):
    out.write("".join(f"loss: {1.0 / (i + 1):.6f} (step {i})\\n"
                      for i in range(start, min(start + 1000, n))))
    out.flush()
"""
VARIANTS = {
    "no metrics declared (plain streaming)": "",
    "metrics: {stdout: true}": "\n    metrics: {stdout: true}",
    "metrics: {stdout: {loss: regex}}": '\n    metrics: {stdout: {loss: "loss: (\\\\S+)"}}',
}


def median_of(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.3f} s"


def bench_capture(lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "REPRUN_HOME": str(root / "home")}
        print(f"capture: {lines} lines of output, median of {REPEAT}")
        print(f"{'variant':<40} {'reprun run':>10} {'streaming':>10} {'read log':>10}")
        for label, declaration in VARIANTS.items():
            project = root / f"p{abs(hash(label))}"
            project.mkdir()
            (project / "printer.py").write_text(PRINTER)
            (project / "MLproject").write_text(
                f"name: bench\nentry_points:\n  main:\n    command: \"python printer.py {lines}\""
                f"{declaration}\n")
            walls, durations, reads = [], [], []
            for _ in range(REPEAT):
                begin = time.perf_counter()
                subprocess.run([sys.executable, "-m", "runner", "run", str(project), "-q",
                                "--env-manager", "local"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - begin)
                record = _last_record(root / "home")
                durations.append(float(record["duration_s"]))
                reads.append(_read_only(root / "home" / "runs" / record["run_id"], project))
            print(f"{label:<40} {median_of(walls):>10} {median_of(durations):>10} "
                  f"{median_of(reads):>10}")


def _last_record(home: Path) -> dict[str, object]:
    newest = max((home / "runs").iterdir(), key=lambda p: (p / "run.json").stat().st_mtime)
    data: dict[str, object] = json.loads((newest / "run.json").read_text())
    return data


def _read_only(run_dir: Path, project: Path) -> float:
    """The time to read the metrics of a finished run again, as the end of a run does."""
    text = (project / "MLproject").read_text()
    spec = None
    if "stdout: true" in text:
        spec = MetricsSpec(stdout=True)
    elif "stdout:" in text:
        spec = MetricsSpec(stdout={"loss": r"loss: (\S+)"})
    scratch = run_dir / "bench-read"
    scratch.mkdir(exist_ok=True)
    begin = time.perf_counter()
    collect(scratch, run_dir / "outputs", run_dir / "output.log", spec, [], lambda _m: None)
    return time.perf_counter() - begin


def fill(store: RunStore, count: int) -> None:
    host = host_info()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(7)
    for index in range(count):
        run_id = uuid.uuid4().hex
        store.create_run_dir(run_id)
        began = start + timedelta(minutes=index)
        alpha, ratio = rng.choice([0.05, 0.1, 0.2, 0.5, 1.0]), rng.random()
        rmse = 0.5 + alpha * rng.random()
        metrics = {"rmse": rmse, "mae": rmse * 0.8, "r2": 1 - rmse / 3}
        store.save(RunRecord(
            run_id=run_id, status=Status.FINISHED, exit_code=0, entry_point="main",
            parameters={"alpha": str(alpha), "l1_ratio": f"{ratio:.3f}"},
            command="python train.py", project=ProjectInfo(uri="wine", path="/wine", name="wine"),
            source=SourceInfo(), environment=EnvironmentInfo(kind="none", manager="local"),
            backend=BackendInfo(name="local"), host=host, output_dir="/out",
            started_at=began, ended_at=began + timedelta(seconds=3), duration_s=3.0,
            metrics={k: MetricSummary(last=v, min=v, max=v, count=1) for k, v in metrics.items()},
        ))


def timed(argv: list[str], env: dict[str, str]) -> float:
    samples = []
    for _ in range(REPEAT):
        begin = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def bench_list(count: int, kept: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = kept or Path(tmp)
        if not (home / "runs").is_dir():
            store = RunStore(home)
            begin = time.perf_counter()
            fill(store, count)
            store.close()
            print(f"list: wrote {count} records in {time.perf_counter() - begin:.1f} s")
        print(f"list: {sum(1 for _ in (home / 'runs').iterdir())} runs; median of {REPEAT}")
        env = {**os.environ, "REPRUN_HOME": str(home)}
        cli = [sys.executable, "-m", "runner"]
        where = "metrics.rmse < 0.6 and params.alpha >= 0.2 and status = FINISHED"
        commands = [
            ["--help"],
            ["runs", "list", "-n", "20"],
            ["runs", "list", "--sort", "metrics.rmse", "-n", "20"],
            ["runs", "list", "--sort", "metrics.rmse", "-c", "params.alpha,metrics.rmse"],
            ["runs", "list", "--sort=-metrics.r2", "--where", where, "-c",
             "params.alpha,metrics.r2"],
            ["runs", "list", "--csv", "-c", "params.alpha,params.l1_ratio,metrics.rmse"],
            ["runs", "list", "--json"],
            ["runs", "compare", "--where", where, "--sort", "metrics.rmse", "-n", "10"],
        ]
        for args in commands:
            shown = " ".join(a if " " not in a else repr(a) for a in args)
            print(f"  reprun {shown:<95} {timed([*cli, *args], env):6.3f} s")
        print("in one process:")
        for args in commands[1:]:
            shown = " ".join(a if " " not in a else repr(a) for a in args)
            print(f"  reprun {shown:<95} {in_process(args, home):6.3f} s")


def in_process(args: list[str], home: Path) -> float:
    from click.testing import CliRunner

    from runner.cli.main import cli

    runner = CliRunner(env={"REPRUN_HOME": str(home)})
    samples = []
    for _ in range(REPEAT):
        begin = time.perf_counter()
        result = runner.invoke(cli, args)
        samples.append(time.perf_counter() - begin)
        if result.exit_code != 0:
            raise SystemExit(f"reprun {' '.join(args)} failed: {result.output}")
    return statistics.median(samples)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    kept = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    if what in ("capture", "all"):
        bench_capture(lines)
    if what in ("list", "all"):
        bench_list(runs, kept)


if __name__ == "__main__":
    main()
