"""Benchmark: `reprun models list` and `models show` with 1,000 models of 100 versions each.

Usage: python benchmarks/bench_models.py [N_MODELS] [N_VERSIONS]   (default 1000 100)

Fills a temporary REPRUN_HOME's model store with the version files `register` writes (without
copying model files), then times the commands a person types (the whole
process, Python's start-up included) and the same calls inside one process. The goal is under
0.3 s. Prints medians of 5 repetitions. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.models.names import Ref
from runner.models.store import VERSIONS, ModelStore
from runner.models.types import InputLineage, Lineage, ModelFile, ModelVersion
from runner.models.view import model_list, model_show

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def version(name: str, number: int) -> ModelVersion:
    run_id = f"{number:08x}{'0' * 24}"
    files = [ModelFile(path=p, size=1000 * i, digest="blake3:" + f"{i:02d}" * 32)
             for i, p in enumerate(("MLmodel", "model.pkl", "conda.yaml", "python_env.yaml"))]
    return ModelVersion(
        name=name, version=number, created_at=START + timedelta(minutes=number),
        created_by="bench@host", run_id=run_id, runs=[run_id], path="model", kind="directory",
        digest="blake3:" + "ab" * 32, size=6000, files=files, description=f"version {number}",
        tags={"team": "bench"}, metrics={"rmse": 0.5, "r2": 0.9},
        lineage=Lineage(run_id=run_id, project="bench", entry_point="main",
                        parameters={"alpha": "0.5"}, commit="c" * 40, env_manager="uv",
                        lock_file="pylock.toml", lock_sha256="d" * 64,
                        inputs=[InputLineage(name="data", digest="blake3:" + "ef" * 32)]),
    )


def fill(store: ModelStore, models: int, versions: int) -> None:
    """The files `register` writes, without syncing each to disk (the alias writes the
    model's summary, as a register would)."""
    for m in range(models):
        name = f"model-{m:04d}"
        with store.locked(name):
            folder = store.root / name / VERSIONS
            for v in range(1, versions + 1):
                (folder / f"{v}.json").write_text(version(name, v).model_dump_json(indent=2))
            store.set_alias(name, "production", versions, "bench@host", START)


def timed(run: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        begin = time.perf_counter()
        run()
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def main() -> None:
    models = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    versions = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ModelStore(home)
        begin = time.perf_counter()
        fill(store, models, versions)
        print(f"wrote {models} models x {versions} versions in "
              f"{time.perf_counter() - begin:.1f} s")
        env = {**os.environ, "REPRUN_HOME": str(home)}
        cli = [sys.executable, "-m", "runner", "models"]
        middle = f"model-{models // 2:04d}"

        def command(*args: str) -> Callable[[], object]:
            return lambda: subprocess.run([*cli, *args], env=env, check=True,
                                          capture_output=True)

        rows = [
            ("reprun --help (start-up alone)", timed(lambda: subprocess.run(
                [sys.executable, "-m", "runner", "--help"], env=env, check=True,
                capture_output=True))),
            ("reprun models list", timed(command("list"))),
            ("reprun models list --json", timed(command("list", "--json"))),
            (f"reprun models show {middle}", timed(command("show", middle))),
            (f"reprun models show {middle}@production",
             timed(command("show", f"{middle}@production"))),
            ("in process: model_list", timed(lambda: model_list(store))),
            ("in process: model_show NAME", timed(lambda: model_show(store, Ref(middle)))),
            ("in process: model_show NAME@alias",
             timed(lambda: model_show(store, Ref(middle, alias="production")))),
        ]
        for label, seconds in rows:
            print(f"{label:<44} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
