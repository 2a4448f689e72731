"""Benchmark: a one-line code change run on Kubernetes, images built by Docker vs assembled
through the registry (no engine).

Usage: python benchmarks/bench_k8s_registry.py [REPETITIONS]   (default 3)

Needs a Docker engine, the test base image (REPRUN_TEST_BASE_IMAGE, default
reprun-test/python:3.11-bookworm; .ci/docker-setup.sh makes it) and Debian's docker-registry.
Starts a registry on 127.0.0.1 (a free port) and the tests' fake Kubernetes API server
(tests/fakekube.py: its "kubelet" runs the command on this machine, in the project folder), pushes
the base image there once, makes a small project and runs it once per builder to warm the
caches. Then, round-robin, each repetition changes one line of the project and runs it with each
builder, and records:

  first line   seconds from `reprun run` to the project's first output line in reprun's stdout
  total        seconds of the whole `reprun run`
  pushed       bytes added to the registry's storage by the run

and prints the medians. The registry builder runs with DOCKER_HOST pointing nowhere.
Measures; asserts nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
BASE = os.environ.get("REPRUN_TEST_BASE_IMAGE") or "reprun-test/python:3.11-bookworm"


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = root / "registry.yml"
    config.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: "
                      f"{{rootdirectory: {root / 'data'}}}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    binary = shutil.which("docker-registry") or "docker-registry"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def stored_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.rglob("data") if p.is_file())


def run(argv: list[str], env: dict[str, str], data: Path) -> tuple[float, float, int]:
    """(seconds to the first project line, total seconds, bytes added to the registry)."""
    before = stored_bytes(data)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    first = float("nan")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("bench line") and math.isnan(first):
            first = time.perf_counter() - start
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"reprun exited {proc.returncode}: {' '.join(argv[:6])} ...")
    return first, total, stored_bytes(data) - before


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    from fakekube import running

    root = Path(tempfile.mkdtemp(prefix="bench-k8s-registry-"))
    registry, host = start_registry(root)
    try:
        subprocess.run(["docker", "tag", BASE, f"{host}/base/python:3.11"], check=True)
        subprocess.run(["docker", "push", "-q", f"{host}/base/python:3.11"], check=True,
                       stdout=subprocess.DEVNULL)
        project = root / "project"
        project.mkdir()
        (project / "MLproject").write_text(
            "name: bench-k8s\nentry_points:\n  main:\n    command: python train.py\n")
        (project / "train.py").write_text("print('bench line 0')\n")
        node = root / "node"
        node.mkdir()
        with running(node) as fake:
            kubeconfig = fake.kubeconfig(root / "kubeconfig.json")
            base_env = {k: v for k, v in os.environ.items() if not k.startswith("REPRUN_")}
            base_env.update(REPRUN_HOME=str(root / "home"), KUBECONFIG=str(kubeconfig))
            ways = {
                "docker": ({"image_builder": "docker"}, {}),
                "registry": ({"image_builder": "registry"},
                             {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}),
            }
            argvs = {}
            for way, (cfg, extra) in ways.items():
                config = json.dumps({"repository-uri": f"{host}/bench/{way}", "poll_seconds": 0.2,
                                     "working_dir": str(project),
                                     "base_image": f"{host}/base/python:3.11", **cfg})
                argv = [sys.executable, "-m", "runner", "run", str(project), "--backend",
                        "kubernetes", "--backend-config", config, "--docker-base-image",
                        BASE if way == "docker" else f"{host}/base/python:3.11"]
                argvs[way] = (argv, {**base_env, **extra})
                run(argv, argvs[way][1], root / "data")  # warm: the base and the first image
            results: dict[str, list[tuple[float, float, int]]] = {w: [] for w in ways}
            for rep in range(1, reps + 1):
                for way, (argv, env) in argvs.items():
                    (project / "train.py").write_text(f"print('bench line {rep} {way}')\n")
                    results[way].append(run(argv, env, root / "data"))
        print(f"one-line code change, {reps} repetitions, medians:")
        for way, rows in results.items():
            first = statistics.median(r[0] for r in rows)
            total = statistics.median(r[1] for r in rows)
            pushed = statistics.median(r[2] for r in rows)
            print(f"  {way:9s} first line {first:6.2f} s   total {total:6.2f} s   "
                  f"pushed {pushed:>10,.0f} bytes")
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        listed = subprocess.run(["docker", "images", "-q", "--filter",
                                 f"reference={host}/bench/docker"], capture_output=True,
                                text=True, check=False).stdout.split()
        subprocess.run(["docker", "image", "rm", "-f", f"{host}/base/python:3.11", *listed],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
