"""A store of real runs for the web view's tests and screenshots: a git project whose ``train``
entry point prints its loss per step and an r2, runs with different parameters, one with
uncommitted changes, one failing, a ``prepare -> train`` lineage chain, and a parameter value
that is HTML."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import Reprun, git, init_repo

from runner.record.store import RunStore
from runner.ui import make_server

MLPROJECT = """\
name: demo
entry_points:
  prepare:
    parameters: {raw: path}
    command: 'tr a-z A-Z < {raw} > "$REPRUN_OUTPUT_DIR/clean.csv" && echo prepared'
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      layers: {type: int, default: 2}
      note: {type: string, default: plain}
    command: "python train.py {alpha} {layers}"
    metrics:
      stdout: true
      better: {r2: max}
  fit:
    parameters: {table: path}
    command: 'wc -l < {table} > "$REPRUN_OUTPUT_DIR/model.txt" && echo "r2: 0.42"'
    metrics: {stdout: true}
  fail:
    command: "echo about to fail && exit 3"
  slow:
    parameters: {gate: string}
    command: 'echo first line; while [ ! -e {gate} ]; do sleep 0.1; done; echo second line'
"""
TRAIN = """\
import sys, time
alpha, layers = float(sys.argv[1]), int(sys.argv[2])
print(f"training alpha={alpha} layers={layers}")
for step in range(5):
    loss = round(1.0 / (step + 1) + alpha / layers, 4)
    print(f"loss: {loss} (step {step})", flush=True)
print(f"r2: {round(1 - alpha / (layers + 1), 4)}")
"""
HTML_VALUE = '<img src=x onerror="document.title=1"><b>bold</b>'


@dataclass
class DemoStore:
    reprun: Reprun
    project: Path
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id


def run(reprun: Reprun, *args: str, ok: bool = True) -> str:
    result = reprun("run", *args, "--env-manager", "local", "-q")
    assert (result.code == 0) == ok, result.stderr
    listed = reprun("runs", "list", "--json", "-n", "1").json()
    return str(listed[0]["run_id"])


def build(reprun: Reprun, root: Path) -> DemoStore:
    """Runs in ``reprun``'s store of a project made under ``root``."""
    project = root / "demo"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(MLPROJECT)
    (project / "train.py").write_text(TRAIN)
    init_repo(project)
    demo = DemoStore(reprun, project)
    raw = root / "raw.csv"
    raw.write_text("a,b\nc,d\n")
    demo.runs["prepare"] = run(reprun, str(project), "-e", "prepare", "-P", f"raw={raw}")
    clean = reprun.home / "runs" / demo.runs["prepare"] / "outputs" / "clean.csv"
    for alpha, layers in ((0.1, 2), (0.9, 2), (0.5, 4)):
        demo.runs[f"a{alpha}-l{layers}"] = run(reprun, str(project), "-P", f"alpha={alpha}",
                                               "-P", f"layers={layers}")
    demo.runs["fit"] = run(reprun, str(project), "-e", "fit", "-P", f"table={clean}")
    demo.runs["html"] = run(reprun, str(project), "-P", "alpha=0.7", "-P", f"note={HTML_VALUE}")
    (project / "train.py").write_text(TRAIN.replace("time", "os"))  # uncommitted
    demo.runs["dirty"] = run(reprun, str(project), "-P", "alpha=0.2", "-P", "layers=3")
    git(project, "checkout", "-q", "--", "train.py")
    demo.runs["failed"] = run(reprun, str(project), "-e", "fail", ok=False)
    return demo


SWEEP_MLPROJECT = """\
name: tune
entry_points:
  main:
    parameters:
      x: {type: float, default: 0.5}
      opt: {type: string, default: adam}
    command: "python train.py {x} {opt}"
    metrics: {stdout: true}
  other:
    command: "echo 'aaa: 1'"
    metrics: {stdout: true}
"""
SWEEP_TRAIN = """\
import sys
x, opt = float(sys.argv[1]), sys.argv[2]
if x == 0.9 and opt == "sgd":
    sys.exit("diverged")
print(f"loss: {round((x - 0.4) ** 2 + (0.05 if opt == 'sgd' else 0.0), 4)}")
print(f"acc: {round(1 - x / 2, 4)}")
"""


@dataclass
class SweepStore:
    reprun: Reprun
    sweep_id: str


def build_sweep(reprun: Reprun, root: Path) -> SweepStore:
    """A real grid sweep of 6 trials (x: 0.1, 0.5, 0.9; opt: adam, sgd) ranked by loss (min),
    whose trial x=0.9 opt=sgd fails, in ``reprun``'s store, and a run outside the sweep (its
    metric ``aaa`` is the store's first by name)."""
    project = root / "tune"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(SWEEP_MLPROJECT)
    (project / "train.py").write_text(SWEEP_TRAIN)
    init_repo(project)
    result = reprun("sweep", str(project), "-P", "x=0.1,0.5,0.9", "-P", "opt=adam,sgd",
                    "--metric", "metrics.loss:min", "--parallel", "2", "--seed", "7",
                    "--env-manager", "local")
    assert result.code == 1, result.stderr  # one trial failed
    run(reprun, str(project), "-e", "other")
    listed = reprun("sweep", "list", "--json").json()
    return SweepStore(reprun, str(listed[0]["sweep_id"]))


def demo_store(root: Path) -> DemoStore:
    """`build` in a new store under ``root`` (commands run from ``root/work``)."""
    return build(_new_reprun(root), root)


def sweep_store(root: Path) -> SweepStore:
    """`build_sweep` in a new store under ``root``."""
    return build_sweep(_new_reprun(root), root)


def _new_reprun(root: Path) -> Reprun:
    (root / "work").mkdir()
    return Reprun(root / "reprun-home", root / "work")


class Client:
    """Raw HTTP to a server: the path is sent exactly as given."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host

    def request(self, path: str, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            for key, value in sent.items():
                conn.putheader(key, value)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, path: str, status: int = 200, **kw: Any) -> Any:
        code, _headers, body = self.request(path, **kw)
        assert code == status, body[:500]
        return json.loads(body)

    def error(self, path: str, status: int, **kw: Any) -> str:
        message: str = self.json(path, status, **kw)["error"]
        return message


@contextlib.contextmanager
def serving(home: Path, token: str | None = None, host: str = "127.0.0.1") -> Iterator[Client]:
    server = make_server(RunStore(home), host, 0, token, dict(os.environ))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Client(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
