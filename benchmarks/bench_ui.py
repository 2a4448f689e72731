"""Benchmark: `reprun ui` with many thousands of runs in the store.

Usage: python benchmarks/bench_ui.py [N_RUNS]   (default 10000; needs chromium and chromedriver)

Fills a temporary REPRUN_HOME with N finished runs with parameters and metrics (written through
the store, as real runs are), then measures:

- start: from starting `reprun ui --port 0` to its first answer of /api/runs;
- the API: /api/runs as the table asks for it (8 parameter and metric columns; 1000 runs, and
  all N), and the CSV of all of them;
- the page: in headless chromium, the time from navigation to the runs table drawn (1000 rows,
  the page's default; then all N rows), as the page itself records it (performance.now()).

Prints medians of 5 repetitions (3 for the page). Measures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("status,started,duration,project,entry_point,params.alpha,params.layers,params.lr,"
           "params.seed,metrics.loss,metrics.r2,metrics.acc,metrics.f1")


def fill(store: RunStore, count: int) -> None:
    host = host_info()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(count):
        run_id = uuid.uuid4().hex
        store.create_run_dir(run_id)
        began = start + timedelta(minutes=index)
        x = (index % 97) / 97
        metrics = {name: MetricSummary(last=value, step=9, min=value, max=1.0, count=10)
                   for name, value in (("loss", 1 - x), ("r2", x), ("acc", x / 2), ("f1", x / 3))}
        store.save(RunRecord(
            run_id=run_id, status=Status.FINISHED, exit_code=0, entry_point="train",
            parameters={"alpha": f"{x:.4f}", "layers": str(index % 7), "lr": "0.001",
                        "seed": str(index)},
            command=f"python train.py {index}",
            project=ProjectInfo(uri="proj", path="/proj", name="proj"), source=SourceInfo(),
            environment=EnvironmentInfo(kind="none", manager="local"),
            backend=BackendInfo(name="local"), host=host, output_dir="/out",
            started_at=began, ended_at=began + timedelta(seconds=3), duration_s=3.0,
            metrics=metrics,
        ))


def start_ui(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, float]:
    begin = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "ui", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    with urllib.request.urlopen(url + "api/runs?limit=1") as answer:
        answer.read()
    return proc, url, time.perf_counter() - begin


def median_of(repeat: int, action: Any) -> float:
    samples = []
    for _ in range(repeat):
        begin = time.perf_counter()
        action()
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def fetch(url: str) -> int:
    with urllib.request.urlopen(url) as answer:
        return len(answer.read())


def page_render(url: str, limit: int, repeat: int = 3) -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import start_browser

    browser = start_browser()
    try:
        samples = []
        for _ in range(repeat):
            browser.get("about:blank")
            browser.get(f"{url}#/runs?limit={limit}&cols={COLUMNS.split(',', 5)[5]}")
            for _ in range(600):
                drawn = browser.execute_script("return window.__firstRender")
                if drawn is not None:
                    rows = browser.execute_script(
                        "return document.querySelectorAll('#runs tbody tr').length")
                    assert rows == limit, rows
                    samples.append(drawn / 1000)
                    break
                time.sleep(0.05)
        return statistics.median(samples)
    finally:
        browser.quit()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory(prefix="reprun-bench-ui-") as scratch:
        home = Path(scratch) / "home"
        began = time.perf_counter()
        fill(RunStore(home), count)
        print(f"filled {count} runs in {time.perf_counter() - began:.1f} s")
        env = {**os.environ, "REPRUN_HOME": str(home)}
        starts = []
        for _ in range(5):
            proc, url, took = start_ui(env)
            starts.append(took)
            proc.terminate()
            proc.wait()
        print(f"reprun ui: started and answered in {statistics.median(starts):.3f} s (median)")
        proc, url, _took = start_ui(env)
        try:
            for limit in (1000, count):
                api = f"{url}api/runs?columns={COLUMNS}&limit={limit}"
                size = fetch(api)
                took = median_of(5, lambda api=api: fetch(api))
                print(f"/api/runs, {limit} runs, 13 columns: {took * 1000:.0f} ms "
                      f"({size // 1024} KiB)")
            took = median_of(5, lambda: fetch(f"{url}api/runs.csv?columns={COLUMNS}"))
            print(f"/api/runs.csv, {count} runs: {took * 1000:.0f} ms")
            for limit in (1000, count):
                print(f"page: runs table of {limit} rows drawn {page_render(url, limit):.2f} s "
                      "after navigation (median of 3)")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
