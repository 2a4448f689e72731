"""Benchmark: what `pip install reprun` costs, core and with extras (size, packages, time).

Usage: python benchmarks/bench_install.py [EXTRA ...]   (default: core all)

For each variant ("core" is no extra), builds a fresh virtual environment in a temporary folder,
installs this checkout into it with pip (a wheel, as from an index; pip's cache should be warm:
run it twice and read the second), then prints the install time, the number of distributions
and the size of the venv, and the size of the largest distributions. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            entry = Path(folder) / name
            if not entry.is_symlink():
                total += entry.stat().st_size
    return total


def largest(venv: Path, count: int = 5) -> list[tuple[str, int]]:
    """The biggest top-level entries of site-packages (packages, not their dist-info)."""
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = [(p.name, tree_size(p) if p.is_dir() else p.stat().st_size)
             for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def measure(extra: str, workdir: Path) -> dict[str, object]:
    venv = workdir / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    baseline = tree_size(venv)
    target = str(ROOT) if extra == "core" else f"{ROOT}[{extra}]"
    started = time.monotonic()
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    target], check=True, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "freeze",
                             "--disable-pip-version-check"], check=True, capture_output=True,
                            text=True).stdout.split()
    return {"variant": extra, "seconds": seconds, "packages": len(listed) - 1,  # pip itself
            "venv_mb": tree_size(venv) / 1e6, "added_mb": (tree_size(venv) - baseline) / 1e6,
            "largest": largest(venv)}


def main(variants: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="reprun-bench-install-") as tmp:
        for extra in variants:
            result = measure(extra, Path(tmp))
            big = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in result["largest"])  # type: ignore[attr-defined]
            print(f"{result['variant']:<12} {result['seconds']:6.1f} s  "
                  f"{result['packages']:3d} packages  venv {result['venv_mb']:6.1f} MB "
                  f"(+{result['added_mb']:.1f} MB over an empty venv)  largest: {big}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["core", "all"])
