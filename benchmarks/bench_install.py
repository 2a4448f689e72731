"""Benchmark: what `pip install reprun` costs, core and with extras (size, packages, time).

Usage: python benchmarks/bench_install.py [EXTRA ...]   (default: core all)

For each variant ("core" is no extra), builds a fresh virtual environment in a temporary folder,
installs reprun into it with pip from a wheel of this checkout (built once first, as an index
would serve it; pip's cache should be warm: run it twice and read the second), then prints the
install time (wall, and CPU: a busy machine shows in the first), the number of distributions, the
size of the venv and of the largest packages. Measures; asserts nothing.
"""

from __future__ import annotations

import os
import resource
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
    """The biggest packages of site-packages, and executables of bin/ (uv's binary is one)."""
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = [(p.name, tree_size(p) if p.is_dir() else p.stat().st_size)
             for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))]
    sizes += [(f"bin/{p.name}", p.stat().st_size) for p in (venv / "bin").iterdir()
              if p.is_file() and not p.is_symlink()]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def build_wheel(workdir: Path) -> Path:
    """reprun's wheel, as ``pip install reprun`` would download it."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(workdir), str(ROOT)], check=True,
                   stderr=subprocess.DEVNULL)
    return next(workdir.glob("reprun-*.whl"))


def measure(extra: str, wheel: Path, workdir: Path) -> dict[str, object]:
    venv = Path(tempfile.mkdtemp(prefix=f"venv-{extra}-", dir=workdir))
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    baseline = tree_size(venv)
    target = f"reprun @ {wheel.as_uri()}" if extra == "core" else \
        f"reprun[{extra}] @ {wheel.as_uri()}"
    cpu_before = _children_cpu()
    started = time.monotonic()
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    target], check=True, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "freeze",
                             "--disable-pip-version-check"], check=True, capture_output=True,
                            text=True).stdout.split()
    return {"variant": extra, "seconds": seconds, "cpu": cpu,
            "packages": len(listed) - 1,  # pip itself
            "venv_mb": tree_size(venv) / 1e6, "added_mb": (tree_size(venv) - baseline) / 1e6,
            "largest": largest(venv)}


def _children_cpu() -> float:
    """CPU seconds of finished child processes: steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(variants: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="reprun-bench-install-") as tmp:
        wheel = build_wheel(Path(tmp))
        for extra in variants:
            result = measure(extra, wheel, Path(tmp))
            sizes: list[tuple[str, int]] = result["largest"]  # type: ignore[assignment]
            big = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sizes)
            print(f"{result['variant']:<12} {result['seconds']:6.1f} s "
                  f"({result['cpu']:.1f} s CPU, load {os.getloadavg()[0]:.1f})  "
                  f"{result['packages']:3d} packages  venv {result['venv_mb']:6.1f} MB "
                  f"(+{result['added_mb']:.1f} MB over an empty venv)  largest: {big}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["core", "all"])
