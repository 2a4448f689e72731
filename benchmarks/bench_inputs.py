"""What fingerprinting input data costs: a 1 GB file and 10,000 small files, first seen and then
unchanged (through the stat cache), against ``sha256sum`` and DVC's ``dvc add``.

    python benchmarks/bench_inputs.py [--size-mb 1024] [--files 10000] [--repeat 5]
        [--dvc PATH-TO-dvc]

Everything is made in a temporary directory and removed afterwards. The data is in the page cache
(it was just written), so the numbers are CPU cost, not disk speed. Medians of ``--repeat`` runs.
``--dvc`` names a ``dvc`` executable installed in its own virtual environment (not reprun's);
without it DVC is left out.
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.tracking.fingerprint import fingerprint_paths
from runner.tracking.statcache import opened


def median_of(repeat: int, setup: Callable[[], None], work: Callable[[], object],
              clock: Callable[[], float] = time.perf_counter) -> float:
    """The median time of ``work`` (``clock``: wall time, or ``time.process_time`` for the CPU
    time of this process, which a loaded machine changes less)."""
    times = []
    for _ in range(repeat):
        setup()
        started = clock()
        work()
        times.append(clock() - started)
    return statistics.median(times)


def make_big(path: Path, size_mb: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for i in range(size_mb):
            handle.write(block[i % 256:] + block[:i % 256])  # no two MiB alike


def make_small(root: Path, count: int) -> None:
    for i in range(count):
        sub = root / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_bytes(os.urandom(64) + str(i).encode() * 10)
    old = time.time() - 60  # settled data: the stat cache may keep it
    for path in root.rglob("*"):
        os.utime(path, (old, old))


def fingerprint(path: Path, cache: Path) -> None:
    with opened(cache) as stat_cache:
        fingerprint_paths([path], stat_cache)


def sha256sum(path: Path) -> None:
    if path.is_file():
        subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    else:
        subprocess.run(f"find '{path}' -type f -print0 | xargs -0 sha256sum > /dev/null",
                       shell=True, check=True)


def dvc_add(dvc: str, repo: Path, target: Path) -> Callable[[], None]:
    def run() -> None:
        subprocess.run([dvc, "add", "-q", str(target)], cwd=repo, check=True, capture_output=True)

    return run


def dvc_reset(repo: Path, target: Path, cold: bool) -> Callable[[], None]:
    """Before each first-time `dvc add`: no cache, no state DB (DVC's own stat cache)."""

    def reset() -> None:
        Path(f"{target}.dvc").unlink(missing_ok=True)
        shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
        if cold:
            shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)
            shutil.rmtree(repo / "site-cache", ignore_errors=True)

    return reset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dvc", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reprun-bench-inputs-") as scratch:
        root = Path(scratch)
        big, small = root / "data" / "big.bin", root / "data" / "small"
        big.parent.mkdir()
        make_big(big, args.size_mb)
        old = time.time() - 60
        os.utime(big, (old, old))
        make_small(small, args.files)
        cache = root / "digests.sqlite"

        def cold() -> None:
            cache.unlink(missing_ok=True)

        def nothing() -> None:
            pass

        rows = []
        for label, target in ((f"{args.size_mb} MiB file", big),
                              (f"{args.files} small files", small)):
            first = median_of(args.repeat, cold, lambda t=target: fingerprint(t, cache))
            fingerprint(target, cache)
            again = median_of(args.repeat, nothing, lambda t=target: fingerprint(t, cache))
            cpu = median_of(args.repeat, nothing, lambda t=target: fingerprint(t, cache),
                            time.process_time)
            plain = median_of(args.repeat, nothing, lambda t=target: sha256sum(t))
            row = [label, f"{first:.3f}", f"{again:.3f}", f"{cpu:.3f}", f"{plain:.3f}"]
            if args.dvc:
                repo = root
                if not (repo / ".dvc").is_dir():
                    subprocess.run([args.dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
                    subprocess.run([args.dvc, "config", "core.site_cache_dir",
                                    str(repo / "site-cache")], cwd=repo, check=True)
                add = dvc_add(args.dvc, repo, target)
                row.append(f"{median_of(args.repeat, dvc_reset(repo, target, True), add):.3f}")
                row.append(f"{median_of(args.repeat, nothing, add):.3f}")
            rows.append(row)
    head = ["data", "reprun first (s)", "reprun unchanged (s)", "unchanged, CPU (s)",
            "sha256sum (s)"]
    if args.dvc:
        head += ["dvc add first (s)", "dvc add unchanged (s)"]
    print(f"median of {args.repeat}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
